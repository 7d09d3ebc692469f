using SparseDecode.Cuda;
using System.Runtime.InteropServices;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>NCCL (libnccl.so.2), bound through function pointers looked up once, like the driver: a machine without
/// it fails with one sentence. PyTorch's pip packages ship it under site-packages/nvidia/nccl/lib, which is searched
/// beside $SPARSEDECODE_NCCL, LD_LIBRARY_PATH and the CUDA directories.</summary>
internal static unsafe partial class Nccl
{
    public const int Success = 0;
    // ncclDataType_t
    public const int Float32 = 7, Bfloat16 = 9;
    // ncclRedOp_t
    public const int Sum = 0;

    private static readonly object Gate = new();
    private static bool _loaded;
    private static string? _unavailable;

    public static string LibraryPath { get; private set; } = "";

    public static delegate* unmanaged<int*, int> ncclGetVersion;
    public static delegate* unmanaged<NcclUniqueId*, int> ncclGetUniqueId;
    public static delegate* unmanaged<nint*, int, NcclUniqueId, int, int> ncclCommInitRank;
    public static delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int> ncclAllReduce;
    public static delegate* unmanaged<ulong, ulong, nuint, int, nint, nint, int> ncclAllGather;
    public static delegate* unmanaged<nint, int> ncclCommDestroy;
    public static delegate* unmanaged<int, byte*> ncclGetErrorString;
    public static delegate* unmanaged<nint, byte*> ncclGetLastError;

    /// <summary>Loads NCCL and binds every entry point; null, or one sentence saying why it cannot be used. Before
    /// anything else it turns NVLink SHARP (multicast objects) off in the process environment, which NCCL reads.</summary>
    public static string? Load()
    {
        lock (Gate)
        {
            if (_loaded) return _unavailable;
            _loaded = true;
            DisableNvlinkMulticast();
            if (!NativeLibraryLocator.TryLoad("libnccl", "SPARSEDECODE_NCCL", out var h, out var tried, ["2"], PythonPackageDirectories()))
                return _unavailable = $"NCCL (libnccl.so.2) was not found (tried {tried}); install it, e.g. with PyTorch's nvidia-nccl pip package, or name it in SPARSEDECODE_NCCL.";
            LibraryPath = tried;
            try
            {
                nint F(string name) => NativeLibrary.TryGetExport(h, name, out var p) ? p : throw new EntryPointNotFoundException(name);
                ncclGetVersion = (delegate* unmanaged<int*, int>)F("ncclGetVersion");
                ncclGetUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)F("ncclGetUniqueId");
                ncclCommInitRank = (delegate* unmanaged<nint*, int, NcclUniqueId, int, int>)F("ncclCommInitRank");
                ncclAllReduce = (delegate* unmanaged<ulong, ulong, nuint, int, int, nint, nint, int>)F("ncclAllReduce");
                ncclAllGather = (delegate* unmanaged<ulong, ulong, nuint, int, nint, nint, int>)F("ncclAllGather");
                ncclCommDestroy = (delegate* unmanaged<nint, int>)F("ncclCommDestroy");
                ncclGetErrorString = (delegate* unmanaged<int, byte*>)F("ncclGetErrorString");
                ncclGetLastError = (delegate* unmanaged<nint, byte*>)F("ncclGetLastError");
            }
            catch (EntryPointNotFoundException e)
            {
                return _unavailable = $"The NCCL at {tried} is too old for SparseDecode (it lacks {e.Message}; 2.13 or later has everything).";
            }
            return null;
        }
    }

    public static void Check(int status, string call, nint comm = 0)
    {
        if (status != Success) throw new NcclException(call, status, Describe(status, comm));
    }

    public static string Describe(int status, nint comm = 0)
    {
        string text = ncclGetErrorString != null && ncclGetErrorString(status) is var p && p != null
            ? Marshal.PtrToStringUTF8((nint)p)! : "unknown error";
        string last = ncclGetLastError != null && ncclGetLastError(comm) is var l && l != null ? Marshal.PtrToStringUTF8((nint)l)! : "";
        return string.IsNullOrWhiteSpace(last) ? $"NCCL error {status} ({text})" : $"NCCL error {status} ({text}: {last.Trim()})";
    }

    /// <summary>NCCL_NVLS_ENABLE=0 in the native environment (getenv; Environment.SetEnvironmentVariable alone only
    /// changes .NET's copy on Unix), overriding any other value: multicast objects can take a shared host's GPUs out
    /// of service, and SparseDecode never creates one.</summary>
    public static void DisableNvlinkMulticast()
    {
        Environment.SetEnvironmentVariable(NvlsVariable, "0");
        if (!OperatingSystem.IsWindows()) SetEnv(NvlsVariable, "0", 1);
    }

    public const string NvlsVariable = "NCCL_NVLS_ENABLE";

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    /// <summary>site-packages/nvidia/nccl/lib of every Python 3 under /usr/local/lib, /usr/lib and ~/.local/lib.</summary>
    private static IEnumerable<string> PythonPackageDirectories()
    {
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        foreach (var root in new[] { "/usr/local/lib", "/usr/lib", Path.Combine(home, ".local/lib") })
        {
            if (!Directory.Exists(root)) continue;
            IEnumerable<string> pythons;
            try
            {
                pythons = Directory.EnumerateDirectories(root, "python3*").ToArray();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            foreach (var py in pythons)
                foreach (var packages in new[] { "dist-packages", "site-packages" })
                    yield return Path.Combine(py, packages, "nvidia", "nccl", "lib");
        }
    }
}
