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
/// then one token per step through a captured CUDA graph
/// that is replayed with the new token and position written into device memory. Logits come back to the host for
/// sampling. A method written as a selection plan runs inside that graph (<see cref="PlanAttention"/>: its state on
/// the device, no host round trip). Prefill keeps
/// Quest's page summaries, so a dense prefill can be forked into any method.</summary>
internal sealed class GpuDecodeSession : IDecodeSequence, ICountsAttendedKeys
{
    private readonly GpuEngine _engine;
    private readonly GpuModel _model;
    private readonly GpuKvCache _cache;
    private readonly CudaStream _stream;
    private readonly ILayerAttention _prefillAttention;
    private readonly PlanAttention? _planAttention;
    private CudaGraph? _graph;
    private readonly float[] _logits;
    private readonly int[] _slots = new int[ModelKernels.MaxRows];
    private readonly int[] _positions = new int[ModelKernels.MaxRows];

    public int Slot { get; }
    public int Length { get; private set; }
    public int Capacity { get; }
    public int VocabSize => _model.Config.VocabSize;
    public long CacheBytes => (long)Length * _model.Config.NumLayers * 2 * _model.Config.KvDim * 2;
    /// <summary>The device-resident method, when the session decodes through a plan.</summary>
    public PlanAttention? Plan => _planAttention;
    /// <summary>Dense attention: the engine batches such sequences as rows of one step.</summary>
    public bool IsDense => _planAttention is null;
    /// <summary>Decode through the captured graph (default), or launch the step's kernels one by one.</summary>
    public bool UseGraph { get; set; } = true;

    internal GpuDecodeSession(GpuEngine engine, int slot, int capacity, SelectionPlan? plan)
    {
        _engine = engine;
        _model = engine.Model;
        _cache = engine.Cache;
        _stream = engine.Stream;
        Slot = slot;
        Capacity = capacity;
        Array.Fill(_slots, slot);
        _prefillAttention = new SummaryKeepingAttention(_cache);
        if (plan != null)
        {
            _planAttention = new PlanAttention(_model, _cache, plan, 1, engine.Selection);
            _planAttention.Reset(_stream);
        }
        _logits = new float[ModelKernels.MaxRows * _model.Config.VocabSize];
    }

    /// <summary>Runs tokens at positions Length.. through the model; `everyLogits(i, logits)` sees token i's
    /// next-token logits (null: only the last token's are kept, in <see cref="Logits"/>). Leaves Quest's page
    /// summaries of every page it wrote.</summary>
    public void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null)
    {
        CheckRoom(tokens.Length);
        if (tokens.IsEmpty) return;
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

    public ReadOnlySpan<float> Logits => _logits.AsSpan(_lastRow * VocabSize, VocabSize);

    /// <summary>One decode step of `token` at position Length through the captured graph.</summary>
    public void Decode(int token, IAttentionObserver? observer = null)
    {
        if (observer != null)
            throw new NotSupportedException($"Attention observers need the CPU engine; the GPU ({_engine.DeviceName}) does not compute dense attention beside the method.");
        CheckStep(token);
        if (IsDense && UseGraph)
        {
            _engine.DecodeDense(this, token);
            return;
        }
        _positions[0] = Length;
        _cache.SetRows(_slots.AsSpan(0, 1), [token], _positions.AsSpan(0, 1), _stream);
        if (UseGraph)
        {
            _graph ??= _stream.Capture(() => _model.EnqueueStep(_cache, 1, _cache.Capacity, _stream, _planAttention));
            _graph.Launch(_stream);
        }
        else _model.EnqueueStep(_cache, 1, _cache.Capacity, _stream, _planAttention);
        _stream.Synchronize();
        _model.Logits.Download(_logits.AsSpan(0, VocabSize));
        Accept(null);
    }

    /// <summary>Checks that `token` can be decoded next (room and vocabulary).</summary>
    internal void CheckStep(int token)
    {
        CheckRoom(1);
        if ((uint)token >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(token), $"Token id {token} is outside the vocabulary of {VocabSize}.");
    }

    /// <summary>A step of this sequence ran: its logits (null: already in row 0 of the buffer) and one more position.</summary>
    internal void Accept(ReadOnlySpan<float> logits)
    {
        if (!logits.IsEmpty) logits.CopyTo(_logits);
        Length++;
        _lastRow = 0;
    }

    public IDecodeSequence Fork(int capacity, SelectionPlan? plan = null)
    {
        if (capacity < Length) throw new ArgumentOutOfRangeException(nameof(capacity), $"A copy of a sequence of {Length} positions cannot hold only {capacity}.");
        var copy = (GpuDecodeSession)_engine.CreateSequence(capacity, plan);
        _cache.CopySlot(Slot, copy.Slot, _stream);
        _stream.Synchronize();
        copy.Length = Length;
        Logits.CopyTo(copy._logits);
        return copy;
    }

    /// <summary>Forgets the positions from `length` on. The page summaries of the page `length` falls in keep
    /// the keys beyond it until they are overwritten: Quest's bounds there stay upper bounds, only looser.</summary>
    public void Truncate(int length)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"The sequence has only {Length} positions.");
        Length = length;
    }

    /// <summary>Keys the last step attended over all layers and query heads (dense: every position at every head).</summary>
    public long KeysAttendedLastStep() =>
        _planAttention?.KeysAttended(0, Length) ?? (long)Length * _model.Config.NumHeads * _model.Config.NumLayers;

    private void CheckRoom(int n)
    {
        if (Length + n > Capacity)
            throw new ContextOverflowException($"The sequence needs {Length + n} positions but its GPU cache slot holds {Capacity}.");
    }

    public void Dispose()
    {
        _graph?.Dispose();
        _planAttention?.Dispose();
        _engine.Release(Slot);
    }
}
