using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda;

/// <summary>The GPU backend of <see cref="IInferenceEngine"/>: a checkpoint's weights on the device, one bf16 KV
/// cache of `slots` sequence slots of `capacity` positions each, and one stream that every sequence's work is
/// queued on. A sequence occupies a slot until disposed. Dense sequences of a batch run as the rows of one step
/// through a step graph captured once per row count; a sequence whose method is a selection plan runs its own
/// captured step (its plan state is per sequence).</summary>
internal sealed class GpuEngine : IInferenceEngine
{
    private readonly bool[] _used;
    private readonly CudaGraph?[] _denseGraphs = new CudaGraph?[ModelKernels.MaxRows + 1];
    private readonly int[] _slots = new int[ModelKernels.MaxRows], _tokens = new int[ModelKernels.MaxRows], _positions = new int[ModelKernels.MaxRows];
    private readonly float[] _logits;
    private SelectionKernels? _selection;

    public CudaDevice Device { get; }
    public DecodeKernels DecodeKernels { get; }
    public ModelKernels ModelKernels { get; }
    public GpuWeights Weights { get; }
    public GpuModel Model { get; }
    public GpuKvCache Cache { get; }
    public CudaStream Stream { get; }
    public ModelConfig Config => Model.Config;
    public string DeviceName => Device.Name;
    public int MaxContext => Cache.Capacity;
    public int Slots => Cache.Slots;
    public bool ConcurrentSequences => false;
    public bool SupportsObserver => false;

    /// <summary>Loads `directory` onto the first GPU for sequences of up to `capacity` positions (capped at the
    /// model's context), `slots` of them at a time. No driver or GPU: a <see cref="CudaException"/> in one sentence.</summary>
    public static GpuEngine Load(string directory, int capacity, int slots = 1)
    {
        var config = ModelConfig.Load(directory);
        var device = CudaDevice.Open();
        try
        {
            using var store = WeightStore.Open(directory);
            return new GpuEngine(device, GpuWeights.Upload(device, store, config), capacity, slots);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    private readonly bool _ownsDevice;

    /// <summary>An engine over weights already on `device`; with ownsDevice it disposes both with itself.</summary>
    public GpuEngine(CudaDevice device, GpuWeights weights, int capacity, int slots = 1, bool ownsDevice = true)
    {
        _ownsDevice = ownsDevice;
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        Device = device;
        Weights = weights;
        DecodeKernels = new DecodeKernels(device);
        ModelKernels = new ModelKernels(device);
        Model = new GpuModel(DecodeKernels, ModelKernels, weights, capacity);
        Cache = new GpuKvCache(device, weights.Config, slots, Model.Capacity);
        Stream = new CudaStream(device);
        _used = new bool[slots];
        _logits = new float[ModelKernels.MaxRows * weights.Config.VocabSize];
    }

    /// <summary>The selection kernels, loaded once for every sequence that decodes through a plan.</summary>
    internal SelectionKernels Selection => _selection ??= new SelectionKernels(Device);

    public IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        if (capacity > MaxContext)
            throw new ContextOverflowException($"The sequence needs {capacity} positions but the GPU cache holds {MaxContext} per sequence.");
        plan?.CheckFits(Config, capacity);
        int slot = Array.IndexOf(_used, false);
        if (slot < 0)
            throw new InvalidOperationException($"All {Slots} sequence slots of the GPU cache are in use; free a sequence or load the engine with more slots.");
        _used[slot] = true;
        try
        {
            return new GpuDecodeSession(this, slot, capacity, plan);
        }
        catch
        {
            _used[slot] = false;
            throw;
        }
    }

    internal void Release(int slot) => _used[slot] = false;

    public void DecodeBatch(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length != sequences.Count) throw new ArgumentException($"{sequences.Count} sequences but {tokens.Length} tokens.");
        _dense.Clear();
        for (int i = 0; i < sequences.Count; i++)
        {
            var seq = sequences[i] as GpuDecodeSession ?? throw new ArgumentException("A sequence of another engine was passed to the GPU engine.");
            if (seq.IsDense) _dense.Add((seq, tokens[i]));
            else seq.Decode(tokens[i]);
        }
        DecodeDense();
    }

    /// <summary>One dense sequence's step, through the same batched graph (no per-token allocation).</summary>
    internal void DecodeDense(GpuDecodeSession seq, int token)
    {
        _dense.Clear();
        _dense.Add((seq, token));
        DecodeDense();
    }

    // the dense sequences of the step being run, reused from step to step
    private readonly List<(GpuDecodeSession Seq, int Token)> _dense = [];

    /// <summary>The collected dense sequences as rows of graph-replayed steps of up to MaxRows rows each.</summary>
    private void DecodeDense()
    {
        var dense = _dense;
        for (int first = 0; first < dense.Count; first += ModelKernels.MaxRows)
        {
            int rows = Math.Min(ModelKernels.MaxRows, dense.Count - first);
            for (int r = 0; r < rows; r++)
            {
                var (seq, token) = dense[first + r];
                seq.CheckStep(token);
                (_slots[r], _tokens[r], _positions[r]) = (seq.Slot, token, seq.Length);
            }
            Cache.SetRows(_slots.AsSpan(0, rows), _tokens.AsSpan(0, rows), _positions.AsSpan(0, rows), Stream);
            DenseGraph(rows).Launch(Stream);
            Stream.Synchronize();
            int v = Config.VocabSize;
            Model.Logits.Download(_logits.AsSpan(0, rows * v));
            for (int r = 0; r < rows; r++) dense[first + r].Seq.Accept(_logits.AsSpan(r * v, v));
        }
    }

    /// <summary>The dense step for `rows` rows, captured on first use and replayed for every later step.</summary>
    internal CudaGraph DenseGraph(int rows) =>
        _denseGraphs[rows] ??= Stream.Capture(() => Model.EnqueueStep(Cache, rows, Cache.Capacity, Stream));

    public void Dispose()
    {
        foreach (var g in _denseGraphs) g?.Dispose();
        _selection?.Dispose();
        Stream.Dispose();
        Cache.Dispose();
        Model.Dispose();
        ModelKernels.Dispose();
        DecodeKernels.Dispose();
        if (!_ownsDevice) return;
        Weights.Dispose();
        Device.Dispose();
    }
}
