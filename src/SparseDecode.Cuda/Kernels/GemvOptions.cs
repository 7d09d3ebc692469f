using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>Which matrix-vector kernel of model_step.cu a launch of a given number of rows uses, fixed when
/// <see cref="ModelKernels"/> is made. The defaults are the measured fastest (bench/gpu/NOTES.md); the others
/// exist to compare against (`gpu-step` sweeps them) and to run everything in f32 on the CUDA cores
/// (<see cref="CudaCoresOnly"/>, `gpu-check --no-tensor-cores`).</summary>
internal sealed record GemvOptions
{
    /// <summary>Launches of at least this many rows (and K a multiple of 32) go to the tensor-core kernel; fewer to
    /// the f32 CUDA-core kernels. 2 by default: measured on an H100, the 8-row CUDA-core kernel took 1.9× the
    /// weight-read floor, where one row reads at 1.15× (bench/gpu/NOTES.md).</summary>
    public int TensorCoreMinRows { get; init; } = 2;

    /// <summary>The one-row CUDA-core kernel and its output rows per block (8 warps × rows per warp): one of
    /// <see cref="ModelKernels.OneRowVariants"/>.</summary>
    public (string Kernel, int RowsPerBlock) OneRowKernel { get; init; } = ModelKernels.OneRowVariants[0];

    /// <summary>Rows per tensor-core block: 16, 32 or 64 (each activation load serves 1, 2 or 4 weight tiles).
    /// 0: 64 where that still gives two blocks per multiprocessor, else 32.</summary>
    public int TensorCoreTileRows { get; init; } = 32;

    /// <summary>Steps of at least this many rows run each matrix product as one cuBLAS product of the activations'
    /// three bf16 parts stacked as rows (f32 accuracy, the weights read once for every row and part), the parts'
    /// results then summed (<see cref="WideProduct"/>); fewer rows use the kernels above. 2 by default: measured on an
    /// H100 (docs/performance.md), the 8B shape's products took 6.6 ms through cuBLAS against 7.2 through the
    /// tensor-core kernel at 8 rows, 7.4 against 19.1 at 32, where one row reads at 1.13× its floor on the CUDA cores.</summary>
    public int CublasMinRows { get; init; } = 2;

    /// <summary>Every product on the CUDA cores in f32 (no bf16 split of the activations).</summary>
    public static GemvOptions CudaCoresOnly { get; } = new() { TensorCoreMinRows = int.MaxValue, CublasMinRows = int.MaxValue };
}
