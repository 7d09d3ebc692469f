using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;

namespace SparseDecode.Cuda.Selection;

/// <summary>The attention of one batched decode step whose rows are grouped by method: the first `denseRows` rows
/// attend densely, then each plan group's rows run that plan's operations over them alone (its buffers' row r is the
/// group's r-th row of the step). Before the first layer each group gathers its rows' carried state, after the last
/// it scatters it back (<see cref="PlanGroup"/>). The whole step stays one captured graph.</summary>
internal sealed class StepAttention : ILayerAttention
{
    private readonly record struct Part(PlanGroup Group, int First, int Rows, DeviceBuffer Queries, DeviceBuffer Output);

    private readonly GpuKvCache _cache;
    private readonly int _denseRows;
    private readonly Part[] _parts;

    /// <param name="groups">The plan groups in row order with their row counts; their rows follow the dense rows.</param>
    public StepAttention(GpuModel model, GpuKvCache cache, int denseRows, IReadOnlyList<(PlanGroup Group, int Rows)> groups)
    {
        _cache = cache;
        _denseRows = denseRows;
        long qBytes = model.Config.QDim * 4L;
        _parts = new Part[groups.Count];
        int first = denseRows;
        for (int i = 0; i < groups.Count; i++)
        {
            var (g, rows) = groups[i];
            _parts[i] = new Part(g, first, rows, model.Queries.Slice(first * qBytes, rows * qBytes), model.AttentionOutput.Slice(first * qBytes, rows * qBytes));
            first += rows;
        }
    }

    public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream)
    {
        if (layer == 0)
            foreach (var p in _parts) p.Group.Gather(Slots(p), p.Rows, stream);
        if (_denseRows > 0) model.DenseAttention(kv with { Rows = _denseRows }, stream);
        foreach (var p in _parts)
        {
            var sub = _cache.View(layer, p.First, p.Rows, kv.PlanLength);
            p.Group.Attention.Enqueue(model, layer, sub, p.Queries, p.Output, _cache.Positions + (ulong)p.First * 4, stream);
        }
        if (layer == model.Config.NumLayers - 1)
            foreach (var p in _parts) p.Group.Scatter(Slots(p), p.Rows, stream);
    }

    private ulong Slots(in Part p) => _cache.RowSlots + (ulong)p.First * 4;
}
