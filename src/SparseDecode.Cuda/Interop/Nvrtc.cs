using System.Runtime.InteropServices;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>NVRTC, the run-time CUDA C++ compiler, bound through function pointers from whichever versioned
/// libnvrtc the toolkit installs (override: SPARSEDECODE_NVRTC=/path/to/libnvrtc.so.N).</summary>
internal static unsafe class Nvrtc
{
    private static readonly object Gate = new();
    private static bool _loaded;
    private static string? _unavailable;

    public static string LibraryPath { get; private set; } = "";

    public static delegate* unmanaged<int*, int*, int> nvrtcVersion;
    public static delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int> nvrtcCreateProgram;
    public static delegate* unmanaged<nint, int, byte**, int> nvrtcCompileProgram;
    public static delegate* unmanaged<nint, nuint*, int> nvrtcGetProgramLogSize;
    public static delegate* unmanaged<nint, byte*, int> nvrtcGetProgramLog;
    public static delegate* unmanaged<nint, nuint*, int> nvrtcGetCUBINSize;
    public static delegate* unmanaged<nint, byte*, int> nvrtcGetCUBIN;
    public static delegate* unmanaged<nint*, int> nvrtcDestroyProgram;
    public static delegate* unmanaged<int, byte*> nvrtcGetErrorString;

    public static string? Load()
    {
        lock (Gate)
        {
            if (_loaded) return _unavailable;
            _loaded = true;
            if (!NativeLibraryLocator.TryLoad("libnvrtc", "SPARSEDECODE_NVRTC", out var h, out var tried))
                return _unavailable = $"NVRTC (the CUDA run-time compiler) was not found (tried {tried}); install the CUDA toolkit or set SPARSEDECODE_NVRTC.";
            LibraryPath = tried;
            try
            {
                nint F(string n) => NativeLibrary.TryGetExport(h, n, out var p) ? p : throw new EntryPointNotFoundException(n);
                nvrtcVersion = (delegate* unmanaged<int*, int*, int>)F("nvrtcVersion");
                nvrtcCreateProgram = (delegate* unmanaged<nint*, byte*, byte*, int, byte**, byte**, int>)F("nvrtcCreateProgram");
                nvrtcCompileProgram = (delegate* unmanaged<nint, int, byte**, int>)F("nvrtcCompileProgram");
                nvrtcGetProgramLogSize = (delegate* unmanaged<nint, nuint*, int>)F("nvrtcGetProgramLogSize");
                nvrtcGetProgramLog = (delegate* unmanaged<nint, byte*, int>)F("nvrtcGetProgramLog");
                nvrtcGetCUBINSize = (delegate* unmanaged<nint, nuint*, int>)F("nvrtcGetCUBINSize");
                nvrtcGetCUBIN = (delegate* unmanaged<nint, byte*, int>)F("nvrtcGetCUBIN");
                nvrtcDestroyProgram = (delegate* unmanaged<nint*, int>)F("nvrtcDestroyProgram");
                nvrtcGetErrorString = (delegate* unmanaged<int, byte*>)F("nvrtcGetErrorString");
            }
            catch (EntryPointNotFoundException e)
            {
                return _unavailable = $"The NVRTC library {tried} is too old (it lacks {e.Message}).";
            }
            return null;
        }
    }

    public static void Check(int status, string call)
    {
        if (status == 0) return;
        var s = nvrtcGetErrorString != null ? Marshal.PtrToStringUTF8((nint)nvrtcGetErrorString(status)) : null;
        throw new CudaException(call, status, s ?? $"NVRTC error {status}");
    }

    public static (int Major, int Minor) Version()
    {
        int a, b;
        Check(nvrtcVersion(&a, &b), "nvrtcVersion");
        return (a, b);
    }
}
