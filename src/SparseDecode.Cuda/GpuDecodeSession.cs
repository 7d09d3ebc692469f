using SparseDecode.Cpu;
using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda;

/// <summary>One sequence decoded on the GPU, in one slot of its engine's cache: prefill through the model's chunked
/// tensor-core prefill (<see cref="GpuPrefill"/>; heads it does not take go through decode steps of up to 8 rows),
/// then one token per step as a row of the engine's batched step (<see cref="GpuEngine.DecodeBatch"/>; alone, a step
/// of one row), a captured CUDA graph replayed with the new token and position written into device memory. Logits
/// come back to the host, or stay on the device when the engine draws the next token there
/// (<see cref="GpuEngine.DecodeAndSample"/>). A method written as a selection plan runs inside that graph through its
/// <see cref="PlanGroup"/>, its state on the device in the group's pool. Prefill keeps Quest's page summaries where
/// the slot has them, and a fork into a plan that reads them makes them, so a dense prefill can be forked into any method. Speculative decoding's dense pass (<see cref="DecodeDense"/>) runs
/// the tokens as rows of one batched step, and the plan's state is checkpointed by copies of the sequence's place in
/// its group's pool. Where the cache is on demand the slot's memory covers the sequence's capacity, and Quest's page
/// summaries are kept only for a plan that reads them.</summary>
internal sealed class GpuDecodeSession : IDecodeSequence, ICountsAttendedKeys, ISpeculativeSequence
{
    private readonly GpuEngine _engine;
    private readonly GpuModel _model;
    private readonly GpuKvCache _cache;
    private readonly CudaStream _stream;
    private readonly ILayerAttention? _prefillAttention;
    private readonly float[] _logits;
    private readonly int[] _slots = new int[ModelKernels.MaxRows];
    private readonly int[] _positions = new int[ModelKernels.MaxRows];

    public int Slot { get; }
    public int Length { get; private set; }
    public int Capacity { get; }
    public int VocabSize => _model.Config.VocabSize;
    /// <summary>Device bytes of cache the sequence holds: the pages mapped for its capacity when memory is on demand,
    /// its written positions' keys and values otherwise.</summary>
    public long CacheBytes => _cache.OnDemand ? _cache.HeldBytes(Slot) : (long)Length * _model.Config.NumLayers * 2 * _model.Config.KvDim * 2;
    /// <summary>The device-resident method, when the session decodes through a plan. Its buffers' row
    /// <see cref="LastRow"/> is this sequence's after its last step, until another step of the group runs.</summary>
    public PlanAttention? Plan => Group?.Attention;
    /// <summary>The plan group the session decodes through (null: dense attention).</summary>
    public PlanGroup? Group { get; }
    public GpuEngine Engine => _engine;
    /// <summary>Decode through the captured graph (default), or launch the step's kernels one by one.</summary>
    public bool UseGraph { get; set; } = true;
    /// <summary>The engine's number of the last step that ran this sequence, and its row there within its group (or
    /// among the dense rows).</summary>
    internal long LastStep { get; set; } = -1;
    internal int LastRow { get; set; }

    internal GpuDecodeSession(GpuEngine engine, int slot, int capacity, PlanGroup? group)
    {
        _engine = engine;
        _model = engine.Model;
        _cache = engine.Cache;
        _stream = engine.Stream;
        Slot = slot;
        Capacity = capacity;
        Array.Fill(_slots, slot);
        _prefillAttention = _cache.KeepsSummaries(slot) ? new SummaryKeepingAttention(_cache) : null;
        Group = group;
        _logits = new float[ModelKernels.MaxRows * _model.Config.VocabSize];
    }

    /// <summary>Runs tokens at positions Length.. through the model; `everyLogits(i, logits)` sees token i's
    /// next-token logits (null: only the last token's are kept, in <see cref="Logits"/>). Leaves Quest's page
    /// summaries of every page it wrote.</summary>
    public void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null)
    {
        CheckRoom(tokens.Length);
        if (tokens.IsEmpty) return;
        _logitsOnHost = true;
        if (_model.Prefill is { } prefill)
        {
            prefill.Run(_cache, Slot, tokens, Length, _logits.AsSpan(0, VocabSize), everyLogits, _stream);
            Length += tokens.Length;
            _lastRow = 0;
            progress?.Invoke(tokens.Length, tokens.Length);
            return;
        }
        int v = VocabSize;
        for (int c0 = 0; c0 < tokens.Length; c0 += ModelKernels.MaxRows)
        {
            int n = Math.Min(ModelKernels.MaxRows, tokens.Length - c0);
            for (int r = 0; r < n; r++) _positions[r] = Length + r;
            _model.Forward(_cache, _slots.AsSpan(0, n), tokens.Slice(c0, n), _positions.AsSpan(0, n), _logits, _stream, _prefillAttention);
            if (everyLogits != null)
                for (int r = 0; r < n; r++) everyLogits(c0 + r, _logits.AsSpan(r * v, v));
            Length += n;
            _lastRow = n - 1;
            progress?.Invoke(c0 + n, tokens.Length);
        }
    }

    private int _lastRow;
    // false after a step whose token was drawn on the device without copying the logits (GpuEngine.DecodeAndSample)
    private bool _logitsOnHost = true;

    public ReadOnlySpan<float> Logits => _logitsOnHost ? _logits.AsSpan(_lastRow * VocabSize, VocabSize)
        : throw new InvalidOperationException("This sequence's last token was drawn on the GPU and its logits were not copied to the host; ask for them with keepLogits.");

    /// <summary>One decode step of `token` at position Length: a step of one row through the engine.</summary>
    public void Decode(int token, IAttentionObserver? observer = null)
    {
        if (observer != null)
            throw new NotSupportedException($"Attention observers need the CPU engine; the GPU ({_engine.DeviceName}) does not compute dense attention beside the method.");
        _engine.Decode(this, token, UseGraph);
    }

    /// <summary>`tokens` at positions Length.. as the dense rows of one batched step (<see cref="GpuEngine.DecodeRun"/>):
    /// row i's logits are a dense decode step's of token i after the tokens before it, as a row of a batched step
    /// (within the engine contract's tolerance of a lone step's). A plan that reads page summaries gets those of the
    /// pages written recomputed from the new keys, so a Quest draft after the pass bounds what the cache now holds.</summary>
    public void DecodeDense(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (tokens.IsEmpty) return;
        _engine.DecodeRun(this, tokens, logits, UseGraph);
    }

    /// <summary>A dense pass of `n` tokens of this sequence ran: `last` is its last token's logits. A plan that reads
    /// Quest's page summaries gets those of the pages written recomputed from the new keys (queued on the stream).</summary>
    internal void AcceptRun(int n, ReadOnlySpan<float> last)
    {
        if (Group?.Plan.ReadsPageSummaries == true)
            for (int l = 0; l < _model.Config.NumLayers; l++) _cache.SummarisePages(_model.Kernels, l, Slot, Length, Length + n - 1, _stream);
        Advance(n, last);
    }

    // the plan's saved states, SpeculationOptions.MaxDraft of them, made at the first save
    private DeviceBuffer? _checkpoints;

    /// <summary>Queues a copy of the plan's carried state (this sequence's place in its group's pool) into
    /// checkpoint `slot`; nothing for dense attention.</summary>
    public void SavePlanState(int slot) => Checkpoint(slot, restore: false);

    public void RestorePlanState(int slot) => Checkpoint(slot, restore: true);

    private void Checkpoint(int slot, bool restore)
    {
        if (Group is not PlanGroup g) return;
        if ((uint)slot >= SpeculationOptions.MaxDraft)
            throw new ArgumentOutOfRangeException(nameof(slot), $"Checkpoint {slot}; a sequence keeps {SpeculationOptions.MaxDraft}.");
        if (restore && _checkpoints is null) throw new InvalidOperationException("No plan state was saved to restore.");
        _checkpoints ??= _engine.Device.Allocate(SpeculationOptions.MaxDraft * g.StateBytes);
        g.Checkpoint(Slot, _checkpoints, slot, restore, _stream);
    }

    /// <summary>Checks that `tokens` can be run next (room and vocabulary).</summary>
    internal void CheckRun(ReadOnlySpan<int> tokens)
    {
        CheckRoom(tokens.Length);
        foreach (int t in tokens)
            if ((uint)t >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"Token id {t} is outside the vocabulary of {VocabSize}.");
    }

    /// <summary>`n` tokens of this sequence ran (a decode step's row, or a prefill by <see cref="GpuEngine.PrefillBatch"/>):
    /// `logits` are its last token's.</summary>
    internal void Advance(int n, ReadOnlySpan<float> logits)
    {
        logits.CopyTo(_logits);
        Length += n;
        _lastRow = 0;
        _logitsOnHost = true;
    }

    /// <summary>A step ran this sequence's token and drew its next one on the device; its logits stayed there.</summary>
    internal void AdvanceDrawn()
    {
        Length++;
        _lastRow = 0;
        _logitsOnHost = false;
    }

    public IDecodeSequence Fork(int capacity, SelectionPlan? plan = null)
    {
        if (capacity < Length) throw new ArgumentOutOfRangeException(nameof(capacity), $"A copy of a sequence of {Length} positions cannot hold only {capacity}.");
        var copy = (GpuDecodeSession)_engine.CreateSequence(capacity, plan);
        FillCopy(copy, Length, first: 0);
        return copy;
    }

    /// <summary>The copy shares the pages wholly below `length` with this sequence where the cache is on demand (they
    /// are mapped into its slot, not copied), and copies the rest; both then refuse to truncate below the shared
    /// positions.</summary>
    public IDecodeSequence ForkPrefix(int length, int capacity, SelectionPlan? plan = null)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"The sequence has only {Length} positions.");
        if (capacity < length) throw new ArgumentOutOfRangeException(nameof(capacity), $"A copy of {length} positions cannot hold only {capacity}.");
        var copy = _engine.CreateSharing(Slot, length, capacity, plan);
        int shared = _cache.SharedPositionsFor(length, capacity);
        FillCopy(copy, length, first: shared);
        _pinned = Math.Max(_pinned, shared);
        copy._pinned = shared;
        return copy;
    }

    /// <summary>Gives `copy` this sequence's first `length` positions: copies the keys and values from `first` on (those
    /// below are already its memory), makes Quest's page summaries where it keeps them and this sequence does not, and
    /// this sequence's logits when it copies all of it. Frees `copy` if that fails.</summary>
    private void FillCopy(GpuDecodeSession copy, int length, int first)
    {
        try
        {
            _cache.CopySlot(Slot, copy.Slot, length, _stream, first);
            if (length > 0 && _cache.KeepsSummaries(copy.Slot) && !_cache.KeepsSummaries(Slot))
                for (int l = 0; l < _model.Config.NumLayers; l++) _cache.SummarisePages(_model.Kernels, l, copy.Slot, 0, length - 1, _stream);
            _stream.Synchronize();
        }
        catch
        {
            copy.Dispose();
            throw;
        }
        copy.Length = length;
        if (length == Length && _logitsOnHost) Logits.CopyTo(copy._logits);
        copy._logitsOnHost = _logitsOnHost || length < Length;
    }

    // positions whose pages another sequence shares: never rewritten while this sequence lives
    private int _pinned;

    /// <summary>Forgets the positions from `length` on. The page summaries of the page `length` falls in keep
    /// the keys beyond it until they are overwritten: Quest's bounds there stay upper bounds, only looser.</summary>
    public void Truncate(int length)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"The sequence has only {Length} positions.");
        if (length < _pinned)
            throw new InvalidOperationException($"The first {_pinned} positions' memory is shared with a copy of this sequence; it cannot be cut to {length}.");
        Length = length;
    }

    /// <summary>Keys the last step attended over all layers and query heads (dense: every position at every head).</summary>
    /// <remarks>A plan's counts are read from the group's buffers, so only until another step of the group runs.</remarks>
    public long KeysAttendedLastStep()
    {
        if (Group is not PlanGroup g) return (long)Length * _model.Config.NumHeads * _model.Config.NumLayers;
        if (g.LastStep != LastStep)
            throw new InvalidOperationException("The keys a sequence attended are known only until another step of a sequence with its plan runs.");
        return g.Attention.KeysAttended(LastRow, Length);
    }

    private void CheckRoom(int n)
    {
        if (Length + n > Capacity)
            throw new ContextOverflowException($"The sequence needs {Length + n} positions but its GPU cache slot holds {Capacity}.");
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _checkpoints?.Dispose();
        _engine.Release(Slot, Group);
    }
}
