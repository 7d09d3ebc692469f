using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using static SparseDecode.Cuda.Interop.Cublas;

namespace SparseDecode.Cuda.Kernels;

/// <summary>A cuBLAS handle for the matrix products of prefill chunks and of wide decode steps: bf16 weights [n][k]
/// times bf16 activation rows, f32 accumulation on the tensor cores (CUBLAS_COMPUTE_32F), f32 output rows,
/// optionally added to what the output already holds (β = 1: the residual stream). Its workspace is its own, set
/// once, so products captured into many step graphs share it instead of each capture allocating one. Missing cuBLAS
/// fails here with one sentence.</summary>
internal sealed unsafe class CublasGemm : IDisposable
{
    /// <summary>cuBLAS's recommended workspace on Hopper (4 MiB suffices before it).</summary>
    private const long WorkspaceBytes = 32L << 20;
    private readonly CudaDevice _device;
    private readonly DeviceBuffer _workspace;
    private nint _handle;
    private nint _boundStream;

    public CublasGemm(CudaDevice device)
    {
        var reason = Cublas.Load();
        if (reason != null) throw new CudaUnavailableException(reason);
        _device = device;
        device.MakeCurrent();
        nint h;
        Check(cublasCreate(&h), "cublasCreate");
        _handle = h;
        _workspace = device.Allocate(WorkspaceBytes);
    }

    /// <summary>y[r][0..n) (+)= W · x[r] for r &lt; rows: W bf16 [n][k], x bf16 rows of stride xStride, y f32 rows of
    /// stride yStride. Queued on `s`.</summary>
    public void Multiply(ulong weights, int n, int k, ulong x, int xStride, int rows, ulong y, int yStride, bool accumulate, CudaStream s)
    {
        var g = RowMajorGemm.ForWeights(rows, n, k, xStride, yStride);
        _device.MakeCurrent();
        if (_boundStream != s.Handle)
        {
            Check(cublasSetStream(_handle, s.Handle), "cublasSetStream");
            // setting the stream puts cuBLAS back on its own workspace pool
            Check(cublasSetWorkspace(_handle, (void*)_workspace.Pointer, (nuint)WorkspaceBytes), "cublasSetWorkspace");
            _boundStream = s.Handle;
        }
        float alpha = 1f, beta = accumulate ? 1f : 0f;
        Check(cublasGemmEx(_handle, g.TransA, g.TransB, g.M, g.N, g.K, &alpha, (void*)weights, R16BF, g.Lda,
            (void*)x, R16BF, g.Ldb, &beta, (void*)y, R32F, g.Ldc, Compute32F, GemmDefault), "cublasGemmEx");
    }

    public void Dispose()
    {
        if (_handle == 0) return;
        _device.MakeCurrent();
        cublasDestroy(_handle);
        _handle = 0;
        _workspace.Dispose();
    }
}
