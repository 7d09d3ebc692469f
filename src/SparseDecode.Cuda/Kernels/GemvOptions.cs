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

    /// <summary>The bf16 parts the activations enter a cuBLAS product as: 3 (hi + mid + lo, every bit of the f32
    /// mantissa: the CPU engine's arithmetic) or 1 (rounded to bf16 once, as bf16 frameworks run; a third of the
    /// tensor-core work and no sum of parts).</summary>
    public int ActivationParts { get; init; } = 3;

    /// <summary>Every product on the CUDA cores in f32 (no bf16 split of the activations).</summary>
    public static GemvOptions CudaCoresOnly { get; } = new() { CublasMinRows = int.MaxValue };

    /// <summary>Every product, one row included, through cuBLAS with the activations rounded to bf16 once
    /// (<see cref="Engine.ProductPrecision.Bf16"/>): a row's result is then the same arithmetic at any batch size.</summary>
    public static GemvOptions Bf16 { get; } = new() { CublasMinRows = 1, ActivationParts = 1 };

    /// <summary>The products a decode precision asks for.</summary>
    public static GemvOptions For(Engine.ProductPrecision precision) => precision == Engine.ProductPrecision.Bf16 ? Bf16 : new();
}
