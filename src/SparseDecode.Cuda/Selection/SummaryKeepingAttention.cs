using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;

namespace SparseDecode.Cuda.Selection;

/// <summary>Dense attention that also keeps Quest's page summaries current (prefill before a selector decodes).</summary>
internal sealed class SummaryKeepingAttention(GpuKvCache cache) : ILayerAttention
{
    public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream)
    {
        model.Kernels.PageUpdate(kv, cache.Positions, model.Config.HeadDim, stream);
        model.DenseAttention(kv, stream);
    }
}
