using System.Globalization;
using System.Numerics.Tensors;
using SparseDecode.Selection;

namespace SparseDecode.Engine;

/// <summary>How speculative decoding drafts: `Draft` tokens per verification pass, fixed, or (Adaptive) starting
/// there and moved by the acceptance: one more after a pass that kept every draft token, one fewer after a
/// rejection, within [1, <see cref="MaxDraft"/>].</summary>
public sealed record SpeculationOptions(int Draft = 4, bool Adaptive = false)
{
    public const int MaxDraft = 16;

    public void Validate()
    {
        if (Draft < 1 || Draft > MaxDraft)
            throw new ArgumentException($"Speculative decoding drafts 1 to {MaxDraft} tokens per pass, not {Draft}.");
    }

    /// <summary>"auto" (adaptive from 4) or a number of draft tokens from 1 to 16.</summary>
    public static SpeculationOptions Parse(string text)
    {
        if (text.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)) return new SpeculationOptions(4, Adaptive: true);
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int k))
            throw new ArgumentException($"The draft length must be a number of tokens from 1 to {MaxDraft} or 'auto', not '{text}'.");
        var options = new SpeculationOptions(k);
        options.Validate();
        return options;
    }

    public override string ToString() => Adaptive ? "auto" : Draft.ToString(CultureInfo.InvariantCulture);
}

/// <summary>What speculative decoding did: verification passes, draft tokens proposed and kept, and whether the
/// verification was the engine's exact multi-token decode (<see cref="ISpeculativeSequence"/>).</summary>
public sealed record SpeculationStats(int Passes, long Drafted, long Accepted, bool Exact)
{
    /// <summary>Share of draft tokens the dense pass kept.</summary>
    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;

    /// <summary>Draft tokens kept per verification pass (0..K).</summary>
    public double MeanAccepted => Passes == 0 ? 0 : (double)Accepted / Passes;

    /// <summary>Tokens each verification pass yields: the kept draft tokens plus the pass's own (the correction or
    /// the bonus token).</summary>
    public double TokensPerPass => Passes == 0 ? 0 : (double)(Accepted + Passes) / Passes;
}

/// <summary>Self-speculative decoding: the same weights draft with the sequence's sparse plan and verify densely,
/// so the output is dense decoding's at close to sparse speed. A pass: the pending token t (already emitted) and k
/// draft tokens d1..dk, each decoded sparsely through the plan after the one before; then the sequence is
/// truncated back to t's position and t, d1..dk run densely as one pass of k + 1 rows, which rewrites the keys
/// and values the draft wrote with the dense ones and gives the dense next-token logits after each. The longest
/// prefix of drafts the dense logits agree with is kept — greedy: equal to the dense argmax; sampling: speculative
/// sampling's rule (<see cref="AcceptOrResample"/>) — and the pass's own token follows: the dense choice where
/// the first draft was rejected, or a bonus token drawn from the last row when all were kept. The sequence is
/// truncated to the kept tokens; the cache then holds exactly what dense decoding writes.
/// <para>Exactness: on an engine whose sequences are <see cref="ISpeculativeSequence"/>, the dense pass is the
/// decode step's arithmetic row by row — on the CPU bit for bit, so greedy output is dense decoding's token for
/// token and sampled output is distributed as dense decoding's; on the GPU as rows of its batched step, which differ
/// from a lone step by rounding only (the engine contract), as a batched dense sequence's do. Elsewhere the pass is the engine's prefill with every row's logits
/// (<see cref="IDecodeSequence.Prefill"/>), whose rounding may differ from its decode step: greedy output can then
/// differ from dense decoding where two tokens are within that rounding (<see cref="SpeculationStats.Exact"/>
/// says which ran).</para>
/// <para>Plan state after a rejection: rolled back to the last kept token. Before each draft step after the
/// first, the state the plan carries between steps (LFPS's history, PrHS's and HShare's retrieved sets, their
/// steps; <see cref="SelectionPlan.CarriesState"/>) is saved; when draft i + 1 is rejected the plan goes back to
/// the state after the step that decoded draft i, so it never names a position the truncation dropped. Plans
/// without such state (TidalDecode, Quest, StreamingLLM, oracle) recompute their lists from the cache at every
/// step, and Quest's page summaries are rebuilt by the cache's truncation and the dense rewrite. An engine
/// without checkpoints drafts only with stateless plans.</para>
/// Buffers are sized once for the longest draft: a warm pass allocates nothing.</summary>
public sealed class SpeculativeDecoder
{
    private readonly SpeculationOptions _options;
    private readonly int _vocab;
    // the verification pass and its rows' logits
    private readonly DensePass _pass;
    // the draft's distribution at each draft step (sampling only)
    private readonly float[] _draftProbs;
    private readonly float[] _p, _residual;
    // the pass's tokens: the pending one, then the drafts
    private readonly int[] _tokens;
    private int _draft, _passes;
    private long _drafted, _accepted;
    private bool _exact = true;

    public SpeculativeDecoder(int vocabSize, SpeculationOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        options.Validate();
        _options = options;
        _vocab = vocabSize;
        int most = options.Adaptive ? SpeculationOptions.MaxDraft : options.Draft;
        _pass = new DensePass(vocabSize, most + 1);
        _draftProbs = new float[most * vocabSize];
        _p = new float[vocabSize];
        _residual = new float[vocabSize];
        _tokens = new int[most + 1];
        _draft = options.Draft;
    }

    /// <summary>The passes run so far.</summary>
    public SpeculationStats Stats => new(_passes, _drafted, _accepted, _exact);

    /// <summary>Generates up to `maxTokens` tokens after `sequence`'s last token (prefilled or decoded: its
    /// <see cref="IDecodeSequence.Logits"/> are the dense next-token logits), appending each to `tokens` and
    /// calling `onToken` as it is kept, and stops as <see cref="Generator"/> does: after a stop token ("stop"), at
    /// `maxTokens` or when the sequence's capacity is full ("length"). `plan` is the sequence's plan (the draft);
    /// `sampler` picks tokens as dense decoding would. Returns the finish reason.</summary>
    public string Run(IDecodeSequence sequence, SelectionPlan plan, Sampler sampler, int maxTokens, IReadOnlyCollection<int> stopTokenIds,
        List<int> tokens, Action<int>? onToken = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (sequence.Length == 0) throw new ArgumentException("Speculative decoding continues a prefilled sequence; this one is empty.", nameof(sequence));
        if (sequence.Logits.Length != _vocab)
            throw new ArgumentException($"The decoder was made for {_vocab} logits but the sequence gives {sequence.Logits.Length}.", nameof(sequence));
        var exact = sequence as ISpeculativeSequence;
        if (exact is null && plan.CarriesState)
            throw new NotSupportedException(
                $"Speculative decoding with {plan.Name} rolls its state back after a rejection, which this engine's sequences cannot: draft with tidal, quest, streaming or oracle here.");
        bool rollback = exact is not null && plan.CarriesState;
        int vocab = _vocab, capacity = sequence.Capacity, emitted = 0;
        if (maxTokens <= 0) return "length";
        int next = sampler.Next(sequence.Logits);
        while (true)
        {
            tokens.Add(next);
            emitted++;
            onToken?.Invoke(next);
            if (stopTokenIds.Contains(next)) return "stop";
            if (emitted == maxTokens || sequence.Length >= capacity) return "length";
            cancel.ThrowIfCancellationRequested();

            // draft: up to k tokens through the plan, the pass's tokens staying within the budget and the cache
            int start = sequence.Length;
            int k = Math.Min(_draft, Math.Min(maxTokens - emitted - 1, capacity - start - 1));
            _tokens[0] = next;
            int drafted = 0;
            while (drafted < k)
            {
                if (rollback && drafted > 0) exact!.SavePlanState(drafted - 1);
                sequence.Decode(_tokens[drafted]);
                int d;
                if (sampler.IsGreedy) d = sampler.Next(sequence.Logits);
                else
                {
                    var q = _draftProbs.AsSpan(drafted * vocab, vocab);
                    sampler.Distribution(sequence.Logits, q);
                    d = sampler.Draw(q);
                }
                _tokens[++drafted] = d;
                if (stopTokenIds.Contains(d)) break; // nothing after a stop token is kept
            }

            // verify: the pending token and the drafts densely, rewriting what the draft wrote
            sequence.Truncate(start);
            _exact &= _pass.Run(sequence, _tokens.AsSpan(0, drafted + 1));

            int kept = 0;
            next = -1;
            for (; kept < drafted; kept++)
            {
                var row = _pass.Row(kept);
                int d = _tokens[kept + 1];
                if (sampler.IsGreedy)
                {
                    int target = sampler.Next(row);
                    if (target == d) continue;
                    next = target;
                    break;
                }
                sampler.Distribution(row, _p);
                int token = AcceptOrResample(_p, _draftProbs.AsSpan(kept * vocab, vocab), d, sampler, _residual, out bool accepted);
                if (accepted) continue;
                next = token;
                break;
            }
            if (next < 0) next = sampler.Next(_pass.Row(drafted));

            // the plan forgets the steps after the last kept draft's; the cache the positions after it
            if (rollback && kept + 1 < drafted) exact!.RestorePlanState(kept);
            sequence.Truncate(start + kept + 1);
            _passes++;
            _drafted += drafted;
            _accepted += kept;
            if (_options.Adaptive && drafted > 0)
                _draft = kept == drafted ? Math.Min(_draft + 1, SpeculationOptions.MaxDraft) : Math.Max(1, _draft - 1);

            for (int i = 1; i <= kept; i++)
            {
                tokens.Add(_tokens[i]);
                emitted++;
                onToken?.Invoke(_tokens[i]);
                if (stopTokenIds.Contains(_tokens[i])) return "stop";
            }
        }
    }

    /// <summary>Speculative sampling's rule (Leviathan et al., 2023; Chen et al., 2023) for one draft token drawn
    /// from q: it is kept with probability min(1, p(draft) / q(draft)); otherwise a token drawn from
    /// norm(max(0, p − q)) takes its place. Either way the token returned is distributed as p. p and q are
    /// distributions over the vocabulary (<see cref="Sampler.Distribution"/>); `residual` is scratch of the same
    /// length.</summary>
    public static int AcceptOrResample(ReadOnlySpan<float> p, ReadOnlySpan<float> q, int draft, Sampler sampler, Span<float> residual, out bool accepted)
    {
        accepted = sampler.Uniform() * q[draft] < p[draft];
        if (accepted) return draft;
        TensorPrimitives.Subtract(p, q, residual);
        TensorPrimitives.Max(residual, 0f, residual);
        // p ≤ q everywhere only when they are equal, and then the draft is always kept; guard the rounding
        return TensorPrimitives.Sum(residual) > 0 ? sampler.Draw(residual) : sampler.Draw(p);
    }
}
