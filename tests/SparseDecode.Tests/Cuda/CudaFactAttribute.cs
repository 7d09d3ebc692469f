using SparseDecode.Cuda;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Tests.Cuda;

/// <summary>A fact that needs a CUDA GPU: skipped, with the driver's one-sentence reason, where there is none
/// (CI and developer machines have no GPU).</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    private static readonly Lazy<string?> Reason = new(() =>
    {
        try
        {
            return CudaDevice.Probe();
        }
        catch (Exception e)
        {
            return $"CUDA probe failed: {e.Message}";
        }
    });

    public CudaFactAttribute()
    {
        if (Reason.Value is string why) Skip = why;
    }
}
