using SparseDecode.Model;

namespace SparseDecode.Server.Scheduling;

public sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together in one step at most; more wait in the queue.</summary>
    public int MaxBatch { get; init; } = 16;
    /// <summary>Requests waiting at most; a request beyond it is refused with 429.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>Prompt tokens one sequence prefills per step, so a long prompt does not stall the others' decoding.</summary>
    public int PrefillChunk { get; init; } = 256;
    /// <summary>Prompt tokens all sequences together prefill per step (0: no limit, each prefilling sequence its
    /// chunk), given oldest first: a step's work, and so the gap between a running stream's tokens, stays bounded
    /// however many prompts arrive at once, and the earliest prompts finish first.</summary>
    public int PrefillBudget { get; init; }
    /// <summary>Size each step's prompt tokens to the step's decoding (<see cref="PrefillPacer"/>): while sequences
    /// decode, a step prefills for about as long as it decodes, so their gaps between tokens aim at twice a step without
    /// a prompt (more where the smallest chunk's prefill already costs more than the decode), and a prompt arriving
    /// among them waits about twice its prefill alone; with none decoding a step takes <see cref="PrefillBudget"/> as
    /// above.</summary>
    public bool PacePrefill { get; init; }
    /// <summary>Sequences one client may have decoding at once (0: no cap), so that one client cannot hold every
    /// slot of the batch; its further requests wait in the queue, up to half of it (429 beyond). Independently of the cap, a free slot goes to
    /// the waiting client with the fewest sequences decoding (arrival order among equals).</summary>
    public int MaxActivePerClient { get; init; }
    /// <summary>Finished requests' prompt KV caches kept for reuse (0: none): a request whose prompt shares at least
    /// <see cref="PrefixMinTokens"/> leading tokens (whole <see cref="PrefillChunk"/>s of them) with a kept one starts from a
    /// copy of them and prefills only the rest.</summary>
    public int PrefixCacheEntries { get; init; } = 4;
    /// <summary>Cache bytes the kept prompt caches may hold together (the CPU's memory is not a pool the engine
    /// accounts for; on the GPU the pool is, and kept caches give way when a request needs room).</summary>
    public long PrefixCacheBytes { get; init; } = long.MaxValue;
    /// <summary>The shortest shared prefix that is reused rather than prefilled.</summary>
    public int PrefixMinTokens { get; init; } = 64;
    /// <summary>Run the sequences of a step in parallel (each on its own core; their matvecs are parallel too).</summary>
    public bool ParallelSequences { get; init; } = true;
    /// <summary>Events a sequence may have waiting for its handler; one more ends the generation with an error
    /// event (code client_not_reading). A handler falls behind only while its client does not read, so this bounds
    /// what a stalled stream holds and gives its batch place back.</summary>
    public int MaxUnreadEvents { get; init; } = 256;
}
