using SparseDecode.Selection;

namespace SparseDecode.Cuda;

/// <summary>A decode step's attention through a selection plan on the device: per layer the plan's operations are
/// queued on the step's stream (<see cref="GpuPlanOps"/>), then attention over the list the plan returns (or dense).
/// Nothing returns to the host, so the whole step, selection included, is captured once into a CUDA graph and
/// replayed; each row's method state lives in device memory and carries from step to step.</summary>
public sealed class PlanAttention : ILayerAttention, IDisposable
{
    private readonly GpuPlanOps _ops;
    private readonly GpuKvCache _cache;
    private readonly DecodeKernels.AttentionWorkspace _workspace;
    private readonly bool _ownsKernels;

    /// <param name="kernels">The selection kernels to launch (null: load them for this instance alone).</param>
    public PlanAttention(GpuModel model, GpuKvCache cache, SelectionPlan plan, int rows, SelectionKernels? kernels = null)
    {
        if (plan.MaxContext < cache.Capacity)
            throw new ArgumentException($"The {plan.Name} plan was made for contexts up to {plan.MaxContext} but the cache holds {cache.Capacity}.");
        _cache = cache;
        _ownsKernels = kernels is null;
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

    public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream)
    {
        if (Plan.ReadsPageSummaries) model.Kernels.PageUpdate(kv, _cache.Positions, model.Config.HeadDim, stream);
        if (layer == 0) _ops.BeginStep(stream);
        _ops.Bind(layer, kv, model.Queries, stream);
        if (Plan.Layer(_ops, layer) is not IndexSet set)
        {
            model.DenseAttention(kv, stream);
            return;
        }
        var (entries, capacity) = _ops.AttendList(set, layer);
        bool perQuery = Plan.Granularity == SelectionGranularity.QueryHead;
        if (model.TunedAttention)
            model.DecodeKernels.Attention(kv, model.Queries, entries, capacity, perQuery ? IndexHeads.QueryHead : IndexHeads.KvHead,
                model.AttentionOutput, null, _workspace, stream);
        else
            model.Kernels.AttentionAny(kv, model.Config.HeadDim, model.Queries, model.AttentionOutput, _workspace, stream, entries, capacity, perQuery);
    }

    public void Dispose()
    {
        _ops.Dispose();
        _workspace.Dispose();
        if (_ownsKernels) Selection.Dispose();
    }
}
