using SparseDecode.Selection;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;

namespace SparseDecode.Cuda.Selection;

/// <summary>A decode step's attention through a selection plan on the device: per layer the plan's operations are
/// queued on the step's stream (<see cref="GpuPlanOps"/>), then attention over the list the plan returns (or dense).
/// Nothing returns to the host, so the whole step, selection included, is captured once into a CUDA graph and
/// replayed; each row's method state lives in device memory and carries from step to step.</summary>
internal sealed class PlanAttention : ILayerAttention, IDisposable
{
    private readonly GpuPlanOps _ops;
    private readonly GpuKvCache _cache;
    private readonly DecodeKernels.AttentionWorkspace _workspace;
    private readonly bool _ownsKernels;
    private readonly SparseDecode.Model.ModelConfig _config;
    // what each layer attended in the step last queued: the plan's list, or null for dense (the same every step)
    private readonly IndexSet?[] _attended;

    /// <param name="kernels">The selection kernels to launch (null: load them for this instance alone).</param>
    public PlanAttention(GpuModel model, GpuKvCache cache, SelectionPlan plan, int rows, SelectionKernels? kernels = null)
    {
        if (plan.MaxContext < cache.Capacity)
            throw new ArgumentException($"The {plan.Name} plan was made for contexts up to {plan.MaxContext} but the cache holds {cache.Capacity}.");
        _cache = cache;
        _ownsKernels = kernels is null;
        _config = model.Config;
        _attended = new IndexSet?[model.Config.NumLayers];
        Selection = kernels ?? new SelectionKernels(model.Device);
        _ops = new GpuPlanOps(plan, Selection, model.DecodeKernels, model.Config, rows);
        int longest = plan.Layout.Buffers.Where(b => b.Kind == PlanBufferKind.Indices).Select(b => b.Capacity).DefaultIfEmpty(1).Max();
        _workspace = new DecodeKernels.AttentionWorkspace(model.Device, Math.Max(rows, ModelKernels.MaxRows), model.Config.NumHeads,
            DecodeKernels.AttentionWorkspace.ChunksFor(0, longest, model.Config.HeadDim));
    }

    public SelectionKernels Selection { get; }
    public GpuPlanOps Ops => _ops;
    public SelectionPlan Plan => _ops.Plan;

    /// <summary>Every row starts a new sequence.</summary>
    public void Reset(CudaStream s) => _ops.Reset(s);

    public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream) =>
        Enqueue(model, layer, kv, model.Queries, model.AttentionOutput, _cache.Positions, stream);

    /// <summary>Layer `layer` for the rows of `kv` (row r of the plan's buffers is kv's row r), whose queries start at
    /// `queries`, outputs at `output` and newest positions at `positions` (device int[kv.Rows]). Layer 0 begins the
    /// step on those rows.</summary>
    public void Enqueue(GpuModel model, int layer, in KvView kv, DeviceBuffer queries, DeviceBuffer output, ulong positions, CudaStream stream)
    {
        if (layer == 0)
        {
            _ops.UseRows(kv.Rows);
            _ops.BeginStep(stream);
        }
        _ops.Bind(layer, kv, queries, positions, stream);
        var chosen = Plan.Layer(_ops, layer);
        _attended[layer] = chosen;
        // Quest's bounds update the newest page summaries in their own launch; its dense layers do it here
        if (Plan.ReadsPageSummaries && !_ops.UpdatedPageSummaries) model.Kernels.PageUpdate(kv, positions, model.Config.HeadDim, stream);
        if (chosen is not IndexSet set)
        {
            model.DenseAttention(kv, queries, output, stream);
            return;
        }
        var (entries, capacity) = _ops.AttendList(set, layer);
        bool perQuery = Plan.Granularity == SelectionGranularity.QueryHead;
        if (model.TunedAttention)
            model.DecodeKernels.Attention(kv, queries, entries, capacity, perQuery ? IndexHeads.QueryHead : IndexHeads.KvHead,
                output, null, _workspace, stream);
        else
            model.Kernels.AttentionAny(kv, model.Config.HeadDim, queries, output, _workspace, stream, entries, capacity, perQuery);
    }

    /// <summary>Keys attended in the last step by row `row` of length `length`, summed over layers and query heads
    /// (a list chosen per KV head serves each of its group's query heads): what the CPU's observer calls keys
    /// attended per step. Reads the lists' counts back from the device.</summary>
    public long KeysAttended(int row, int length)
    {
        var c = _config;
        bool perQuery = Plan.Granularity == SelectionGranularity.QueryHead;
        int share = perQuery ? 1 : c.GroupSize;
        long total = 0;
        for (int l = 0; l < _attended.Length; l++)
        {
            if (_attended[l] is not IndexSet set)
            {
                total += (long)length * c.NumHeads;
                continue;
            }
            foreach (int count in _ops.AttendedCounts(set, l, row, length)) total += (long)count * share;
        }
        return total;
    }

    public void Dispose()
    {
        _ops.Dispose();
        _workspace.Dispose();
        if (_ownsKernels) Selection.Dispose();
    }
}
