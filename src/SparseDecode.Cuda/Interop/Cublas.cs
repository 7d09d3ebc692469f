using System.Runtime.InteropServices;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>cuBLAS (libcublas.so.N of the installed toolkit, override: SPARSEDECODE_CUBLAS=/path/to/libcublas.so.N),
/// bound through function pointers looked up once, as the driver is: a machine without it fails with one sentence
/// when a prefill or a wide step first needs it, not at load time. Only what those matrix products use.</summary>
internal static unsafe class Cublas
{
    public const int Success = 0;
    public const int OpN = 0, OpT = 1;
    /// <summary>cudaDataType: CUDA_R_32F and CUDA_R_16BF.</summary>
    public const int R32F = 0, R16BF = 14;
    /// <summary>cublasComputeType_t CUBLAS_COMPUTE_32F: f32 accumulation (bf16 inputs go to the tensor cores).</summary>
    public const int Compute32F = 68;
    /// <summary>cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT: cuBLAS's heuristic picks the kernel.</summary>
    public const int GemmDefault = -1;

    private static readonly object Gate = new();
    private static bool _loaded;
    private static string? _unavailable;

    public static string LibraryPath { get; private set; } = "";

    public static delegate* unmanaged<nint*, int> cublasCreate;
    public static delegate* unmanaged<nint, int> cublasDestroy;
    public static delegate* unmanaged<nint, nint, int> cublasSetStream;
    public static delegate* unmanaged<nint, void*, nuint, int> cublasSetWorkspace;
    public static delegate* unmanaged<nint, int, int, int, int, int, void*, void*, int, int, void*, int, int, void*, void*, int, int, int, int, int> cublasGemmEx;
    public static delegate* unmanaged<int, byte*> cublasGetStatusString;

    /// <summary>Null when cuBLAS is loaded, else the one sentence saying why it cannot be.</summary>
    public static string? Load()
    {
        lock (Gate)
        {
            if (_loaded) return _unavailable;
            _loaded = true;
            if (!NativeLibraryLocator.TryLoad("libcublas", "SPARSEDECODE_CUBLAS", out var h, out var tried))
                return _unavailable = $"cuBLAS, which the GPU prefill's matrix products need, was not found (tried {tried}); install the CUDA toolkit's libcublas or set SPARSEDECODE_CUBLAS.";
            LibraryPath = tried;
            try
            {
                nint F(string n) => NativeLibrary.TryGetExport(h, n, out var p) ? p : throw new EntryPointNotFoundException(n);
                cublasCreate = (delegate* unmanaged<nint*, int>)F("cublasCreate_v2");
                cublasDestroy = (delegate* unmanaged<nint, int>)F("cublasDestroy_v2");
                cublasSetStream = (delegate* unmanaged<nint, nint, int>)F("cublasSetStream_v2");
                cublasSetWorkspace = (delegate* unmanaged<nint, void*, nuint, int>)F("cublasSetWorkspace_v2");
                cublasGemmEx = (delegate* unmanaged<nint, int, int, int, int, int, void*, void*, int, int, void*, int, int, void*, void*, int, int, int, int, int>)F("cublasGemmEx");
                cublasGetStatusString = (delegate* unmanaged<int, byte*>)F("cublasGetStatusString");
            }
            catch (EntryPointNotFoundException e)
            {
                return _unavailable = $"The cuBLAS library {tried} is too old for the GPU prefill (it lacks {e.Message}).";
            }
            return null;
        }
    }

    public static void Check(int status, string call)
    {
        if (status == Success) return;
        var s = cublasGetStatusString != null ? Marshal.PtrToStringUTF8((nint)cublasGetStatusString(status)) : null;
        throw new CudaException(call, status, s ?? $"cuBLAS status {status}");
    }
}
