using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Engine;

/// <summary>A checkpoint loaded on one backend — the CPU engine or a GPU — as the commands, the evaluation and the
/// server see it: it makes sequences and advances several of them in one decode step. Every caller above the
/// backends (Generator, Scorer, the eval grid, the speed sweep, calibration, the server's scheduler) goes through
/// this and <see cref="IDecodeSequence"/> only, so each runs unchanged on either backend.</summary>
public interface IInferenceEngine : IDisposable
{
    ModelConfig Config { get; }

    /// <summary>"cpu", or the GPU's name: what a report says the numbers were measured on.</summary>
    string DeviceName { get; }

    /// <summary>The longest sequence (prompt plus generated tokens) one sequence of this engine can hold.</summary>
    int MaxContext { get; }

    /// <summary>Whether <see cref="IDecodeSequence.Decode"/> accepts an attention observer (the fidelity metrics:
    /// mass recall, output error, keys scored), which reads dense attention beside the method's.</summary>
    bool SupportsObserver { get; }

    /// <summary>Whether different sequences may be driven from different threads at once (the CPU: each has its
    /// own cache and workspace); otherwise one thread at a time drives all of them (the GPU: one stream).</summary>
    bool ConcurrentSequences { get; }

    /// <summary>A new, empty sequence that holds up to `capacity` positions and decodes through `plan` (null: dense
    /// attention); the sequence keeps the plan's state. Throws <see cref="ContextOverflowException"/> past
    /// <see cref="MaxContext"/>, and ArgumentException for a plan made for another model shape or for contexts
    /// shorter than `capacity`.</summary>
    IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null);

    /// <summary>Whether <see cref="CreateSequence"/> of `capacity` positions through `plan` would find room now: a free
    /// slot and, where the KV cache is a pool of pages, enough free pages. Where it returns false CreateSequence throws
    /// <see cref="KvCacheFullException"/>; room comes back as sequences are disposed. Default: true (memory is
    /// allocated per sequence).</summary>
    bool HasRoomFor(int capacity, SelectionPlan? plan = null) => true;

    /// <summary>As <see cref="HasRoomFor"/>, for `source.ForkPrefix(length, capacity, plan)`, which may share
    /// memory with `source` (<see cref="IDecodeSequence.ForkPrefix"/>).</summary>
    bool HasRoomForFork(IDecodeSequence source, int length, int capacity, SelectionPlan? plan = null) => HasRoomFor(capacity, plan);

    /// <summary>The KV cache's pool, where sequences take pages from one: its bytes and the bytes free now; (0, 0) where
    /// each sequence allocates its own.</summary>
    (long Total, long Free) KvPool => (0, 0);

    /// <summary>The plan of `method` for this engine's model and context (null for dense attention or no method).</summary>
    SelectionPlan? PlanFor(SelectorSpec? method) => method is null || method.IsDense ? null : method.CreatePlan(Config, MaxContext);

    /// <summary>One decode step for several sequences: tokens[i] at the next position of sequences[i]; afterwards
    /// each sequence's <see cref="IDecodeSequence.Logits"/> are its next-token logits. A backend that can runs
    /// them as the rows of one batched step; the result equals decoding each alone.</summary>
    void DecodeBatch(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens);

    /// <summary>One decode step as <see cref="DecodeBatch"/>, then each sequence's next token drawn by samplers[i] from
    /// its logits into next[i]: the token samplers[i].<see cref="Sampler.Next"/>(sequences[i].Logits) gives. A backend
    /// that can draws on the device, every row at once, and copies only the tokens back: it takes the sampler's uniform
    /// number (<see cref="Sampler.Uniform"/>, one per draw that is not greedy, as Next would) and keeps the same tokens,
    /// so it picks Next's token unless that number falls within rounding of a boundary between two tokens' shares.
    /// Afterwards a sequence's <see cref="IDecodeSequence.Logits"/> are on the host where keepLogits[i] is set (the
    /// caller reads them, e.g. for log-probabilities) or where next[i] is −1: no sampler was given, or the backend left
    /// the draw to the caller (a sampler with penalties or a logit bias, on the GPU; logits that are not finite, which Next turns into
    /// <see cref="NonFiniteLogitsException"/>).
    /// Elsewhere they may not be: reading them throws InvalidOperationException until the sequence's next token runs.
    /// Default: DecodeBatch, then Next on the host.</summary>
    void DecodeAndSample(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens, IReadOnlyList<Sampler?> samplers,
        ReadOnlySpan<bool> keepLogits, Span<int> next)
    {
        CheckDraws(sequences.Count, tokens.Length, samplers.Count, keepLogits.Length, next.Length);
        DecodeBatch(sequences, tokens);
        for (int i = 0; i < sequences.Count; i++)
        {
            next[i] = -1;
            if (samplers[i] is not { } sampler) continue;
            try
            {
                next[i] = sampler.Next(sequences[i].Logits);
            }
            catch (NonFiniteLogitsException)
            {
                // left to the caller, whose Next on these logits throws it
            }
        }
    }

    /// <summary>The argument counts of <see cref="DecodeAndSample"/> agree (every backend's check).</summary>
    internal static void CheckDraws(int sequences, int tokens, int samplers, int keepLogits, int next)
    {
        if (tokens != sequences || samplers != sequences || keepLogits != sequences || next < sequences)
            throw new ArgumentException($"{sequences} sequences but {tokens} tokens, {samplers} samplers, {keepLogits} keep-logits flags and room for {next} tokens.");
    }

    /// <summary>Prefill of several sequences at once: sequences[i] runs tokens[i] at its next positions densely, as
    /// <see cref="IDecodeSequence.Prefill"/> does, and afterwards its <see cref="IDecodeSequence.Logits"/> are its last
    /// token's. A backend that can runs them as one pass, the weights read once for every sequence's tokens; each
    /// sequence's result equals its prefill alone (on the GPU within the rounding its products of more rows may
    /// bring). A sequence without the room or with a token outside the vocabulary throws (on the GPU before any work;
    /// otherwise the sequences before it are done). Default: one Prefill each, in order.</summary>
    void PrefillBatch(IReadOnlyList<IDecodeSequence> sequences, IReadOnlyList<ReadOnlyMemory<int>> tokens)
    {
        if (tokens.Count != sequences.Count) throw new ArgumentException($"{sequences.Count} sequences but {tokens.Count} token runs.");
        for (int i = 0; i < sequences.Count; i++) sequences[i].Prefill(tokens[i].Span);
    }

    /// <summary>Speculative decoding's dense passes of several sequences in one call: sequences[i], an
    /// <see cref="ISpeculativeSequence"/>, runs tokens[i] as its <see cref="ISpeculativeSequence.DecodeDense"/> does,
    /// every row's next-token logits into logits[i]. A backend that can runs them all as rows of one step, the weights
    /// read once for every sequence's pass. Default: one DecodeDense each, in order.</summary>
    void DecodeDenseBatch(IReadOnlyList<IDecodeSequence> sequences, IReadOnlyList<ReadOnlyMemory<int>> tokens, IReadOnlyList<Memory<float>> logits)
    {
        if (tokens.Count != sequences.Count || logits.Count != sequences.Count)
            throw new ArgumentException($"{sequences.Count} sequences but {tokens.Count} token runs and {logits.Count} logit spans.");
        for (int i = 0; i < sequences.Count; i++)
        {
            var exact = sequences[i] as ISpeculativeSequence
                ?? throw new ArgumentException($"Sequence {i} runs no dense pass of the decode step's arithmetic (not an {nameof(ISpeculativeSequence)}).");
            exact.DecodeDense(tokens[i].Span, logits[i].Span);
        }
    }

    /// <summary>Prepares, ahead of the first request, what batches of up to `sequences` sequences decoding through
    /// `plan` (null: dense) need, so that no request pays for it: on the GPU the plan's buffers and the step graph of
    /// every batch size it pads to. Needs that many free sequence slots; leaves none in use. Default: nothing.</summary>
    void WarmUp(SelectionPlan? plan, int sequences) { }
}

/// <summary>One sequence's KV cache and method state on an engine. Prefill is dense; decode steps attend through
/// the sequence's plan. Not thread-safe: one caller drives a sequence.</summary>
public interface IDecodeSequence : IDisposable
{
    /// <summary>Positions written so far.</summary>
    int Length { get; }

    int Capacity { get; }

    /// <summary>Bytes of KV cache this sequence holds now.</summary>
    long CacheBytes { get; }

    /// <summary>Next-token logits after the last token run (prefilled or decoded).</summary>
    ReadOnlySpan<float> Logits { get; }

    /// <summary>Runs tokens at positions Length.. densely. `everyLogits(i, logits)`, when given, sees token i's
    /// next-token logits; `progress(done, total)` is called after each chunk.</summary>
    void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null);

    /// <summary>One decode step of `token` at position Length through the plan. `observer` (only where the
    /// engine <see cref="IInferenceEngine.SupportsObserver"/>) sees every layer's attention.</summary>
    void Decode(int token, IAttentionObserver? observer = null);

    /// <summary>A copy of this sequence — its cache and its logits — that holds up to `capacity` positions and
    /// decodes from here on through `plan` (null: dense), whose state starts fresh at this position.</summary>
    IDecodeSequence Fork(int capacity, SelectionPlan? plan = null);

    /// <summary>A sequence holding this one's first `length` positions (the rest forgotten), up to `capacity` in all,
    /// that decodes from there through `plan` (fresh state), as Fork then Truncate give; its logits are this one's
    /// when `length` is <see cref="Length"/>, stale otherwise. A backend may map the memory of the positions below
    /// `length` into the copy instead of copying it (the GPU on demand, by whole pages): the two must not write below
    /// `length` while both live, and a truncation below it throws.</summary>
    IDecodeSequence ForkPrefix(int length, int capacity, SelectionPlan? plan = null)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"The sequence has only {Length} positions.");
        var copy = Fork(Math.Max(capacity, Length), plan);
        copy.Truncate(length);
        return copy;
    }

    /// <summary>Forgets the positions from `length` on: the next token goes at `length` and overwrites them.
    /// <see cref="Logits"/> are stale until the next token runs.</summary>
    void Truncate(int length);
}

/// <summary>A sequence that can say how many keys its last decode step attended without an observer (the GPU's
/// device plans: the lists' counts read back from the device), summed over layers and query heads.</summary>
public interface ICountsAttendedKeys
{
    long KeysAttendedLastStep();
}

/// <summary>A sequence that speculative decoding (<see cref="SpeculativeDecoder"/>) runs on with the decode step's
/// arithmetic: a dense pass of several tokens whose every row is the dense decode step of its token, and checkpoints
/// of the plan's state, so that the steps of rejected draft tokens can be forgotten. A sequence without it is
/// verified through <see cref="IDecodeSequence.Prefill"/> (the backend's prefill arithmetic) and drafts only with
/// methods that keep no state between steps.</summary>
public interface ISpeculativeSequence
{
    /// <summary>Runs `tokens` at positions Length.. densely as one pass (the weights read once for all of them):
    /// logits[i·vocab, (i + 1)·vocab) are token i's next-token logits, what a dense decode step of it after the
    /// tokens before it gives, and so are the keys and values written — on the CPU bit for bit a lone
    /// <see cref="IDecodeSequence.Decode"/>'s; on the GPU a row of its batched step's, which the engine contract holds
    /// within rounding of a lone step's. Afterwards <see cref="IDecodeSequence.Logits"/> are the last token's. The
    /// plan's state is untouched.</summary>
    void DecodeDense(ReadOnlySpan<int> tokens, Span<float> logits);

    /// <summary>Saves the plan's state carried between steps in checkpoint `slot` (reused by later saves).</summary>
    void SavePlanState(int slot);

    /// <summary>Puts back the plan's state saved in `slot`: the decode steps since are forgotten by the plan.</summary>
    void RestorePlanState(int slot);
}
