using SparseDecode.Cuda.Interop;

namespace SparseDecode.Cuda.Kernels;

/// <summary>The matrix products of a wide decode step (<see cref="GemvOptions.CublasMinRows"/> rows or more) as one
/// cuBLAS product each: the f32 activations as three bf16 parts stacked as rows [part][rows][k] (so they enter at f32
/// accuracy, as in the tensor-core kernels), one product of 3 × rows rows that reads the weights once for every row
/// and part, and the parts' results summed into the output. Sized when made for the widest product of a step of up to
/// `maxRows` rows.</summary>
internal sealed class WideProduct : IDisposable
{
    private const int Parts = 3;
    private readonly ModelKernels _kernels;
    private readonly CublasGemm _gemm;
    private readonly DeviceBuffer _parts, _partial;
    private readonly int _maxRows;
    private readonly long _maxIn, _maxOut;

    /// <param name="maxIn">Widest input (K) of a product.</param>
    /// <param name="maxOut">Widest output (N) of a product.</param>
    public WideProduct(ModelKernels kernels, int maxRows, long maxIn, long maxOut)
    {
        _kernels = kernels;
        (_maxRows, _maxIn, _maxOut) = (maxRows, maxIn, maxOut);
        var dev = kernels.Device;
        _gemm = new CublasGemm(dev);
        _parts = dev.Allocate(Parts * maxRows * 2L * maxIn);
        _partial = dev.Allocate(Parts * maxRows * 4L * maxOut);
    }

    /// <summary>y[b][n] = W[n]·x[b] + bias[n] (accumulate: y +=) for b &lt; rows: W bf16 [n][k], x and y f32 with row
    /// strides. Queued on `s`.</summary>
    public void Multiply(ulong weights, int n, int k, DeviceBuffer x, int xStride, int rows, DeviceBuffer? bias,
        DeviceBuffer y, int yStride, bool accumulate, CudaStream s)
    {
        if (rows < 1 || rows > _maxRows || k > _maxIn || n > _maxOut)
            throw new ArgumentOutOfRangeException(nameof(rows), $"A wide product of {rows} rows × [{n}][{k}] exceeds the {_maxRows} rows × [{_maxOut}][{_maxIn}] it was sized for.");
        if (k % 8 != 0) throw new ArgumentException($"A wide product needs rows of a multiple of 8 elements, got {k}.");
        _kernels.ToBf16Parts(x, xStride, k, rows, _parts.Pointer, Parts, s);
        _gemm.Multiply(weights, n, k, _parts.Pointer, k, Parts * rows, _partial.Pointer, n, false, s);
        _kernels.SumParts(_partial.Pointer, n, rows, Parts, bias, y, yStride, accumulate, s);
    }

    public void Dispose()
    {
        _gemm.Dispose();
        _parts.Dispose();
        _partial.Dispose();
    }
}
