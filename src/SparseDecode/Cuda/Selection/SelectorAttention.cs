using SparseDecode.Selection;

namespace SparseDecode.Cuda;

/// <summary>A decode step's attention chosen by a selector policy on the host (tidal, lfps, quest, prhs, … as on
/// the CPU), one sequence per step: per layer the step waits for the queries, the selector asks the
/// <see cref="GpuSelectionBackend"/> for scores, and the chosen index lists are copied to the device for the sparse
/// attention kernel (any head shape). Not capturable into a graph: the host decides mid-step.</summary>
public sealed class SelectorAttention : ILayerAttention, IDisposable
{
    private readonly IKvSelector _selector;
    private readonly GpuSelectionBackend _backend;
    private readonly GpuKvCache _cache;
    private readonly CudaStream _stream;
    private readonly LayerSelection _selection;
    private readonly DeviceBuffer _lists;
    private int[] _padded = [];

    /// <summary>Position of the token this step decodes (set before each step).</summary>
    public int Position { get; set; }

    public SelectorAttention(GpuModel model, GpuKvCache cache, CudaStream stream, IKvSelector selector)
    {
        _selector = selector;
        _cache = cache;
        _stream = stream;
        _backend = new GpuSelectionBackend(model, cache, stream);
        var c = model.Config;
        int heads = selector.Granularity == SelectionGranularity.QueryHead ? c.NumHeads : c.NumKvHeads;
        _selection = new LayerSelection(heads, cache.Capacity, selector.Granularity);
        _lists = model.Device.Allocate((long)c.NumHeads * cache.Capacity * 4);
    }

    public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream)
    {
        model.Kernels.PageUpdate(kv, _cache.Positions, model.Config.HeadDim, stream);
        if (layer == 0) _selector.BeginStep(Position);
        _backend.Bind(layer, Position + 1);
        _selection.Dense = true;
        _selector.Select(_backend, _selection);
        if (_selection.Dense)
        {
            model.DenseAttention(kv, stream);
            return;
        }
        // lists padded with −1 (skipped by the kernel) to the longest head's count
        int heads = _selection.Heads, count = 1;
        for (int h = 0; h < heads; h++) count = Math.Max(count, _selection.Count(h));
        if (_padded.Length < heads * count) _padded = new int[heads * count];
        for (int h = 0; h < heads; h++)
        {
            var ids = _selection.Indices(h);
            ids.CopyTo(_padded.AsSpan(h * count));
            _padded.AsSpan(h * count + ids.Length, count - ids.Length).Fill(-1);
        }
        _lists.UploadAsync<int>(_padded.AsSpan(0, heads * count), stream);
        model.Kernels.AttentionAny(kv, model.Config.HeadDim, model.Queries, model.AttentionOutput, model.Workspace, stream,
            _lists, count, _selection.Granularity == SelectionGranularity.QueryHead);
    }

    public void Dispose()
    {
        _backend.Dispose();
        _lists.Dispose();
    }
}

/// <summary>Dense attention that also keeps Quest's page summaries current (prefill before a selector decodes).</summary>
public sealed class SummaryKeepingAttention(GpuKvCache cache) : ILayerAttention
{
    public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream)
    {
        model.Kernels.PageUpdate(kv, cache.Positions, model.Config.HeadDim, stream);
        model.DenseAttention(kv, stream);
    }
}
