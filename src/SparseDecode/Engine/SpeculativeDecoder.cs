using System.Globalization;
using System.Numerics.Tensors;
using SparseDecode.Selection;

namespace SparseDecode.Engine;

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
/// <para>One decoder serves one sequence at a time. <see cref="Run"/> drives a whole generation by itself; a caller
/// that decodes many sequences in batched steps (the server's scheduler) drives the same rounds step by step
/// instead: <see cref="Begin"/>, then while <see cref="Drafting"/> a decode step of <see cref="NextDraftInput"/>
/// through the plan (as a row of its batched step) followed by <see cref="Drafted"/>, then <see cref="Verify"/>,
/// whose tokens are emitted in order.</para>
/// <para>Exactness: on an engine whose sequences are <see cref="ISpeculativeSequence"/>, the dense pass is the
/// decode step's arithmetic row by row — on the CPU bit for bit, so greedy output is dense decoding's token for
/// token and sampled output is distributed as dense decoding's; on the GPU as rows of its batched step, which differ
/// from a lone step by rounding only (the engine contract), as a batched dense sequence's do. Elsewhere the pass is
/// the engine's prefill with every row's logits (<see cref="IDecodeSequence.Prefill"/>), whose rounding may differ from its decode step: greedy output can then
/// differ from dense decoding where two tokens are within that rounding (<see cref="SpeculationStats.Exact"/>
/// says which ran).</para>
/// <para>Plan state after a rejection: rolled back to the last kept token. Before each draft step after the
/// first, the state the plan carries between steps (LFPS's history, PrHS's and HShare's retrieved sets, their
/// steps; <see cref="SelectionPlan.CarriesState"/>) is saved; when draft i + 1 is rejected the plan goes back to
/// the state after the step that decoded draft i, so it never names a position the truncation dropped. Plans
/// without such state (TidalDecode, Quest, StreamingLLM, oracle) recompute their lists from the cache at every
/// step, and Quest's page summaries are rebuilt by the cache's truncation and the dense rewrite. An engine
/// without checkpoints drafts only with stateless plans (<see cref="CannotDraft"/>).</para>
/// Buffers are sized once for the longest draft (the draft distributions at the first sampled draft): a warm
/// round allocates nothing.</summary>
public sealed class SpeculativeDecoder
{
    private readonly SpeculationOptions _options;
    private readonly int _vocab, _most;
    // the verification pass and its rows' logits
    private readonly DensePass _pass;
    // the draft's distribution at each draft step (sampling only; made at the first sampled draft)
    private float[]? _draftProbs;
    private readonly float[] _p, _residual;
    // the round's tokens: the pending one, then the drafts; after the verification the kept drafts and the pass's
    // own token from index 1 on (hence two more than the longest draft)
    private readonly int[] _tokens;
    private int _draft, _passes;
    private long _drafted, _accepted;
    private bool _exact = true;
    // the round in progress: its sequence, where the pending token goes, its draft length, the drafts so far
    private IDecodeSequence? _sequence;
    private ISpeculativeSequence? _checkpoints;
    private int _start, _k, _count;
    private bool _stopped;

    public SpeculativeDecoder(int vocabSize, SpeculationOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        options.Validate();
        _options = options;
        _vocab = vocabSize;
        _most = options.Adaptive ? SpeculationOptions.MaxDraft : options.Draft;
        _pass = new DensePass(vocabSize, _most + 1);
        _p = new float[vocabSize];
        _residual = new float[vocabSize];
        _tokens = new int[_most + 2];
        _draft = options.Draft;
    }

    /// <summary>The passes run so far.</summary>
    public SpeculationStats Stats => new(_passes, _drafted, _accepted, _exact);

    /// <summary>Why `plan` cannot draft on an engine whose sequences do (`checkpoints`: they are
    /// <see cref="ISpeculativeSequence"/>) or do not keep checkpoints of the plan's state, in one sentence; null when
    /// it can. Dense attention (null) has nothing to draft with; a plan that carries state needs checkpoints.</summary>
    public static string? CannotDraft(SelectionPlan? plan, bool checkpoints) => plan switch
    {
        null => "Speculative decoding drafts with a sparse method; with dense attention there is nothing to draft.",
        { CarriesState: true } when !checkpoints =>
            $"Speculative decoding with {plan.Name} rolls its state back after a rejection, which this engine's sequences cannot: draft with tidal, quest, streaming or oracle here.",
        _ => null,
    };

    /// <summary>Why sampling with `sampling` cannot be verified speculatively, or null when it can: penalties make a draft
    /// token's distribution depend on the drafts before it, which verification may reject.</summary>
    public static string? CannotSample(SamplingOptions sampling) => sampling.HasPenalties
        ? "Speculative decoding cannot apply presence or frequency penalties: a draft token's penalised distribution depends on the drafts before it, which verification may reject."
        : null;

    /// <summary>Whether a round has begun and not yet been verified.</summary>
    public bool InRound => _sequence is not null || _verifying is not null;

    /// <summary>Whether the round in progress wants another draft step: fewer drafts than its length, and none of
    /// them a stop token (nothing after one is kept).</summary>
    public bool Drafting => _sequence is not null && _count < _k && !_stopped;

    /// <summary>Begins a round on `sequence`, decoding through `plan`: `pending` is the token last emitted, not yet
    /// run, whose position is sequence.Length; `room` is how many draft tokens the caller's limits leave (tokens it
    /// may still emit after `pending`, less the pass's own, and positions left in the cache after it). Returns the
    /// round's draft length, 0 when there is no room: the round is then the dense pass of `pending` alone. Throws
    /// NotSupportedException where <see cref="CannotDraft"/> says why.</summary>
    public int Begin(IDecodeSequence sequence, SelectionPlan? plan, int pending, int room)
    {
        if (InRound) throw new InvalidOperationException("A speculative round is already in progress; verify it first.");
        Check(sequence, plan);
        // plans without carried state need no checkpoints: nothing to roll back
        _checkpoints = plan!.CarriesState ? sequence as ISpeculativeSequence : null;
        _sequence = sequence;
        _start = sequence.Length;
        _k = Math.Clamp(Math.Min(_draft, room), 0, _most);
        _count = 0;
        _stopped = false;
        _tokens[0] = pending;
        return _k;
    }

    /// <summary>The token the next draft step decodes through the plan: the pending token, then each draft in
    /// turn. Saves the plan's state first where a rejection of the draft before would need it back, so the
    /// caller must run exactly this step next.</summary>
    public int NextDraftInput()
    {
        if (!Drafting) throw new InvalidOperationException("The round wants no more draft steps.");
        if (_count > 0) _checkpoints?.SavePlanState(_count - 1);
        return _tokens[_count];
    }

    /// <summary>After the draft step of <see cref="NextDraftInput"/>: the next draft token, drawn by `sampler`
    /// from the sequence's logits (the draft distribution kept when sampling). A draft in `stopTokenIds` ends the
    /// drafting.</summary>
    public void Drafted(Sampler sampler, IReadOnlyCollection<int> stopTokenIds)
    {
        if (!Drafting) throw new InvalidOperationException("The round wants no more draft steps.");
        var logits = _sequence!.Logits;
        int d;
        if (sampler.IsGreedy) d = sampler.Next(logits);
        else
        {
            var q = (_draftProbs ??= new float[_most * _vocab]).AsSpan(_count * _vocab, _vocab);
            sampler.Distribution(logits, q);
            d = sampler.Draw(q);
        }
        _tokens[++_count] = d;
        if (stopTokenIds.Contains(d)) _stopped = true;
    }

    /// <summary>Ends the round: truncates the sequence to the pending token's position, runs the pending token and
    /// the drafts densely as one pass, keeps the longest prefix of drafts the dense logits accept, rolls the plan's
    /// state and the cache back to the last kept token, and returns the tokens to emit in order: the kept drafts,
    /// then the pass's own token (the dense choice after them), which becomes the next round's pending token and
    /// is not yet run. Token i was chosen from <see cref="VerifiedLogits"/>(i). The span is valid until the next
    /// round begins.</summary>
    public ReadOnlySpan<int> Verify(Sampler sampler)
    {
        var (sequence, tokens, _) = EndDrafting();
        _exact &= _pass.Run(sequence, tokens.Span);
        return Accept(sampler);
    }

    /// <summary>Ends the round's drafting for a caller that runs its dense pass itself, beside other sequences' passes
    /// (<see cref="IInferenceEngine.DecodeDenseBatch"/>): truncates the sequence to the pending token's position and
    /// returns it, the pass's tokens and where their rows' logits go (valid until the next round begins). The sequence
    /// must be an <see cref="ISpeculativeSequence"/> run by its decode-step pass; then <see cref="Accept"/>.</summary>
    public (IDecodeSequence Sequence, ReadOnlyMemory<int> Tokens, Memory<float> Logits) EndDrafting()
    {
        var sequence = _sequence ?? throw new InvalidOperationException("No speculative round is in progress.");
        // end the round first: should the pass fail, the sequence ends with the error and the decoder is free
        _sequence = null;
        _verifying = sequence;
        sequence.Truncate(_start);
        return (sequence, _tokens.AsMemory(0, _count + 1), _pass.Rows(_count + 1));
    }

    private IDecodeSequence? _verifying;

    /// <summary>After the round's dense pass has run (<see cref="EndDrafting"/>): the tokens to emit, as
    /// <see cref="Verify"/> returns them.</summary>
    public ReadOnlySpan<int> Accept(Sampler sampler)
    {
        var sequence = _verifying ?? throw new InvalidOperationException("No dense pass is waiting to be accepted.");
        _verifying = null;
        int drafted = _count, vocab = _vocab;
        int kept = 0, next = -1;
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
        if (kept + 1 < drafted) _checkpoints?.RestorePlanState(kept);
        sequence.Truncate(_start + kept + 1);
        _passes++;
        _drafted += drafted;
        _accepted += kept;
        if (_options.Adaptive && drafted > 0)
            _draft = kept == drafted ? Math.Min(_draft + 1, SpeculationOptions.MaxDraft) : Math.Max(1, _draft - 1);
        _tokens[kept + 1] = next;
        return _tokens.AsSpan(1, kept + 1);
    }

    /// <summary>Refuses a sequence this decoder cannot continue and a plan that cannot draft on it.</summary>
    private void Check(IDecodeSequence sequence, SelectionPlan? plan)
    {
        if (sequence.Length == 0) throw new ArgumentException("Speculative decoding continues a prefilled sequence; this one is empty.", nameof(sequence));
        if (sequence.Logits.Length != _vocab)
            throw new ArgumentException($"The decoder was made for {_vocab} logits but the sequence gives {sequence.Logits.Length}.", nameof(sequence));
        if (CannotDraft(plan, sequence is ISpeculativeSequence) is string why) throw new NotSupportedException(why);
    }

    /// <summary>The dense logits that token i of the last <see cref="Verify"/> was chosen from (a row of its pass):
    /// dense decoding's next-token logits at that token's step.</summary>
    public ReadOnlySpan<float> VerifiedLogits(int i) => _pass.Row(i);

    /// <summary>Generates up to `maxTokens` tokens after `sequence`'s last token (prefilled or decoded: its
    /// <see cref="IDecodeSequence.Logits"/> are the dense next-token logits), appending each to `tokens` and
    /// calling `onToken` as it is kept, and stops as <see cref="Generator"/> does: after a stop token ("stop"), at
    /// `maxTokens` or when the sequence's capacity is full ("length"). `plan` is the sequence's plan (the draft);
    /// `sampler` picks tokens as dense decoding would. Returns the finish reason.</summary>
    public string Run(IDecodeSequence sequence, SelectionPlan plan, Sampler sampler, int maxTokens, IReadOnlyCollection<int> stopTokenIds,
        List<int> tokens, Action<int>? onToken = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(plan);
        Check(sequence, plan);
        int capacity = sequence.Capacity, emitted = 0;
        if (maxTokens <= 0) return "length";
        int pending = sampler.Next(sequence.Logits);
        while (true)
        {
            tokens.Add(pending);
            emitted++;
            onToken?.Invoke(pending);
            if (stopTokenIds.Contains(pending)) return "stop";
            if (emitted == maxTokens || sequence.Length >= capacity) return "length";
            cancel.ThrowIfCancellationRequested();

            // the pass's tokens stay within the budget and the cache
            Begin(sequence, plan, pending, Math.Min(maxTokens - emitted - 1, capacity - sequence.Length - 1));
            while (Drafting)
            {
                sequence.Decode(NextDraftInput());
                Drafted(sampler, stopTokenIds);
            }
            var yielded = Verify(sampler);
            // the kept drafts (the round stayed within the budget, so only a stop token ends it); then the next pending
            for (int i = 0; i < yielded.Length - 1; i++)
            {
                tokens.Add(yielded[i]);
                emitted++;
                onToken?.Invoke(yielded[i]);
                if (stopTokenIds.Contains(yielded[i])) return "stop";
            }
            pending = yielded[^1];
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
