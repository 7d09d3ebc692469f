using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>How a step's matrix products run, fixed when <see cref="ModelKernels"/> is made. The defaults are the
/// measured fastest (docs/performance.md); the others exist to compare against (`gpu-step` sweeps them) and to run
/// everything in f32 on the CUDA cores (<see cref="CudaCoresOnly"/>, `gpu-check --no-tensor-cores`).</summary>
internal sealed record GemvOptions
{
    /// <summary>The one-row CUDA-core kernel and its output rows per block (8 warps × rows per warp): one of
    /// <see cref="ModelKernels.OneRowVariants"/>.</summary>
    public (string Kernel, int RowsPerBlock) OneRowKernel { get; init; } = ModelKernels.OneRowVariants[0];

    /// <summary>Steps of at least this many rows run each matrix product as one cuBLAS product of the activations'
    /// three bf16 parts stacked as rows (f32 accuracy, the weights read once for every row and part), the parts'
    /// results then summed (<see cref="WideProduct"/>); fewer rows use the CUDA-core kernels, in launches of up to
    /// <see cref="ModelKernels.MaxRows"/> rows. 2 by default: measured on an H100 (docs/performance.md, run 46), the 8B
    /// shape's products took 6.6 ms through cuBLAS against 7.2 through the tensor-core kernel this replaced at 8 rows,
    /// 7.4 against 19.1 at 32, while one row reads at 1.13× its floor on the CUDA cores.</summary>
    public int CublasMinRows { get; init; } = 2;

    /// <summary>Every product on the CUDA cores in f32 (no bf16 split of the activations).</summary>
    public static GemvOptions CudaCoresOnly { get; } = new() { CublasMinRows = int.MaxValue };
}
