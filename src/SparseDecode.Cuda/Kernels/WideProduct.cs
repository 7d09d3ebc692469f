using SparseDecode.Cuda.Interop;

namespace SparseDecode.Cuda.Kernels;

/// <summary>The matrix products of a wide decode step (<see cref="GemvOptions.CublasMinRows"/> rows or more) as one
/// cuBLAS product each: the f32 activations as <see cref="GemvOptions.ActivationParts"/> bf16 parts stacked as rows
/// [part][rows][k] (three: they enter at f32 accuracy), one product of parts × rows rows that reads the weights once for
/// every row and part, and the parts' results summed into the output (one part without a bias: the product writes the
/// output itself). Sized when made for the widest product of a step of up to `maxRows` rows.</summary>
internal sealed class WideProduct : IDisposable
{
    private readonly int _parts;
    private readonly ModelKernels _kernels;
    private readonly CublasGemm _gemm;
    private readonly DeviceBuffer _split, _partial;
    private readonly int _maxRows;
    private readonly long _maxIn, _maxOut;

    /// <param name="maxIn">Widest input (K) of a product.</param>
    /// <param name="maxOut">Widest output (N) of a product.</param>
    public WideProduct(ModelKernels kernels, int maxRows, long maxIn, long maxOut)
    {
        _kernels = kernels;
        (_maxRows, _maxIn, _maxOut) = (maxRows, maxIn, maxOut);
        _parts = kernels.Options.ActivationParts;
        if (_parts is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(kernels), $"Activations enter a product as 1 or 3 bf16 parts, not {_parts}.");
        var dev = kernels.Device;
        _gemm = new CublasGemm(dev);
        _split = dev.Allocate(_parts * maxRows * 2L * maxIn);
        _partial = dev.Allocate(_parts * maxRows * 4L * maxOut);
    }

    /// <summary>y[b][n] = W[n]·x[b] + bias[n] (accumulate: y +=) for b &lt; rows: W bf16 [n][k], x and y f32 with row
    /// strides. Queued on `s`.</summary>
    public void Multiply(ulong weights, int n, int k, DeviceBuffer x, int xStride, int rows, DeviceBuffer? bias,
        DeviceBuffer y, int yStride, bool accumulate, CudaStream s)
    {
        if (rows < 1 || rows > _maxRows || k > _maxIn || n > _maxOut)
            throw new ArgumentOutOfRangeException(nameof(rows), $"A wide product of {rows} rows × [{n}][{k}] exceeds the {_maxRows} rows × [{_maxOut}][{_maxIn}] it was sized for.");
        if (k % 8 != 0) throw new ArgumentException($"A wide product needs rows of a multiple of 8 elements, got {k}.");
        _kernels.ToBf16Parts(x, xStride, k, rows, _split.Pointer, _parts, s);
        if (_parts == 1 && bias is null)
        {
            _gemm.Multiply(weights, n, k, _split.Pointer, k, rows, y.Pointer, yStride, accumulate, s);
            return;
        }
        _gemm.Multiply(weights, n, k, _split.Pointer, k, _parts * rows, _partial.Pointer, n, false, s);
        _kernels.SumParts(_partial.Pointer, n, rows, _parts, bias, y, yStride, accumulate, s);
    }

    public void Dispose()
    {
        _gemm.Dispose();
        _split.Dispose();
        _partial.Dispose();
    }
}
