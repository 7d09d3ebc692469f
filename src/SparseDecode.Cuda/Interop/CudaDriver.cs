using System.Runtime.InteropServices;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>The CUDA driver API (libcuda.so.1), bound through function pointers looked up once, so that a machine
/// without the driver fails with one sentence instead of a DllNotFoundException at the first call. Every call goes
/// through <see cref="Check"/>, which names the call and the driver's error string.</summary>
internal static unsafe class CudaDriver
{
    public const int Success = 0;
    public const int ErrorNoDevice = 100;

    // device attributes (CUdevice_attribute)
    public const int AttrMultiprocessorCount = 16;
    public const int AttrL2CacheSize = 38;
    public const int AttrComputeCapabilityMajor = 75;
    public const int AttrComputeCapabilityMinor = 76;
    public const int AttrMaxSharedMemoryPerBlockOptin = 97;
    public const int AttrMemoryClockRate = 36;
    public const int AttrGlobalMemoryBusWidth = 37;

    // function attributes (CUfunction_attribute)
    public const int FuncAttrSharedSizeBytes = 1;
    public const int FuncAttrLocalSizeBytes = 3;
    public const int FuncAttrNumRegs = 4;
    public const int FuncAttrMaxDynamicSharedSizeBytes = 8;

    // launch attributes (CUlaunchAttributeID)
    public const int LaunchAttributeProgrammaticStreamSerialization = 6;

    /// <summary>CUlaunchConfig.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct LaunchConfig
    {
        public uint GridX, GridY, GridZ, BlockX, BlockY, BlockZ, SharedBytes;
        public nint Stream;
        public LaunchAttribute* Attributes;
        public uint AttributeCount;
    }

    /// <summary>CUlaunchAttribute: an id, then a 64-byte value union 8 bytes in.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 72)]
    public struct LaunchAttribute
    {
        [FieldOffset(0)] public int Id;
        [FieldOffset(8)] public int Value;
    }

    /// <summary>CUmemAllocationProp: pinned device memory on one GPU, no exportable handle.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 32)]
    public struct MemAllocationProp
    {
        public int Type, RequestedHandleTypes, LocationType, LocationId;
        public nint Win32HandleMetaData;
        public ulong AllocFlags;
    }

    /// <summary>CUmemAccessDesc: a location and its access flags.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MemAccessDesc
    {
        public int LocationType, LocationId, Flags;
    }

    public const int MemAllocationTypePinned = 1;
    public const int MemLocationTypeDevice = 1;
    public const int MemAccessReadWrite = 3;
    public const int MemGranularityMinimum = 0;

    public const uint StreamNonBlocking = 1;
    public const int CaptureModeThreadLocal = 1;

    private static readonly object Gate = new();
    private static bool _loaded;
    private static string? _unavailable;

    public static delegate* unmanaged<uint, int> cuInit;
    public static delegate* unmanaged<int*, int> cuDriverGetVersion;
    public static delegate* unmanaged<int*, int> cuDeviceGetCount;
    public static delegate* unmanaged<int*, int, int> cuDeviceGet;
    public static delegate* unmanaged<byte*, int, int, int> cuDeviceGetName;
    public static delegate* unmanaged<int*, int, int, int> cuDeviceGetAttribute;
    public static delegate* unmanaged<nuint*, int, int> cuDeviceTotalMem;
    public static delegate* unmanaged<nint*, int, int> cuDevicePrimaryCtxRetain;
    public static delegate* unmanaged<int, int> cuDevicePrimaryCtxRelease;
    public static delegate* unmanaged<nint, int> cuCtxSetCurrent;
    public static delegate* unmanaged<int> cuCtxSynchronize;
    public static delegate* unmanaged<ulong*, nuint, int> cuMemAlloc;
    public static delegate* unmanaged<ulong, int> cuMemFree;
    public static delegate* unmanaged<ulong, void*, nuint, int> cuMemcpyHtoD;
    public static delegate* unmanaged<void*, ulong, nuint, int> cuMemcpyDtoH;
    public static delegate* unmanaged<ulong, void*, nuint, nint, int> cuMemcpyHtoDAsync;
    public static delegate* unmanaged<ulong, ulong, nuint, nint, int> cuMemcpyDtoDAsync;
    public static delegate* unmanaged<ulong, uint, nuint, nint, int> cuMemsetD32Async;
    public static delegate* unmanaged<nuint*, nuint*, int> cuMemGetInfo;
    public static delegate* unmanaged<nint*, void*, int> cuModuleLoadData;
    public static delegate* unmanaged<nint, int> cuModuleUnload;
    public static delegate* unmanaged<nint*, nint, byte*, int> cuModuleGetFunction;
    public static delegate* unmanaged<int*, int, nint, int> cuFuncGetAttribute;
    public static delegate* unmanaged<nint, int, int, int> cuFuncSetAttribute;
    public static delegate* unmanaged<int*, nint, int, nuint, int> cuOccupancyMaxActiveBlocksPerMultiprocessor;
    public static delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int> cuLaunchKernel;
    /// <summary>Null where the driver predates it (CUDA 12).</summary>
    public static delegate* unmanaged<LaunchConfig*, nint, void**, void**, int> cuLaunchKernelEx;
    public static delegate* unmanaged<nint*, uint, int> cuStreamCreate;
    public static delegate* unmanaged<nint, int> cuStreamDestroy;
    public static delegate* unmanaged<nint, int> cuStreamSynchronize;
    public static delegate* unmanaged<nint, int, int> cuStreamBeginCapture;
    public static delegate* unmanaged<nint, nint*, int> cuStreamEndCapture;
    public static delegate* unmanaged<nint*, nint, ulong, int> cuGraphInstantiateWithFlags;
    public static delegate* unmanaged<nint, nint, int> cuGraphLaunch;
    public static delegate* unmanaged<nint, int> cuGraphExecDestroy;
    public static delegate* unmanaged<nint, int> cuGraphDestroy;
    public static delegate* unmanaged<nint, nint*, nuint*, int> cuGraphGetNodes;
    public static delegate* unmanaged<nint*, uint, int> cuEventCreate;
    public static delegate* unmanaged<nint, int> cuEventDestroy;
    public static delegate* unmanaged<nint, nint, int> cuEventRecord;
    public static delegate* unmanaged<nint, int> cuEventSynchronize;
    public static delegate* unmanaged<float*, nint, nint, int> cuEventElapsedTime;
    // virtual memory management: null where the driver lacks it (the KV cache is then allocated whole)
    public static delegate* unmanaged<nuint*, MemAllocationProp*, int, int> cuMemGetAllocationGranularity;
    public static delegate* unmanaged<ulong*, nuint, MemAllocationProp*, ulong, int> cuMemCreate;
    public static delegate* unmanaged<ulong, int> cuMemRelease;
    public static delegate* unmanaged<ulong*, nuint, nuint, ulong, ulong, int> cuMemAddressReserve;
    public static delegate* unmanaged<ulong, nuint, int> cuMemAddressFree;
    public static delegate* unmanaged<ulong, nuint, nuint, ulong, ulong, int> cuMemMap;
    public static delegate* unmanaged<ulong, nuint, int> cuMemUnmap;
    public static delegate* unmanaged<ulong, nuint, MemAccessDesc*, nuint, int> cuMemSetAccess;
    public static delegate* unmanaged<int, byte**, int> cuGetErrorName;
    public static delegate* unmanaged<int, byte**, int> cuGetErrorString;

    /// <summary>Loads the driver and binds every entry point; returns null, or one sentence saying why the driver
    /// cannot be used (not installed, too old).</summary>
    public static string? Load()
    {
        lock (Gate)
        {
            if (_loaded) return _unavailable;
            _loaded = true;
            if (!NativeLibrary.TryLoad("libcuda.so.1", out var h) && !NativeLibrary.TryLoad("libcuda.so", out h)
                && !NativeLibrary.TryLoad("nvcuda.dll", out h))
                return _unavailable = "No CUDA driver is installed on this machine (libcuda.so.1 could not be loaded); use the CPU backend.";
            try
            {
                nint F(params string[] names)
                {
                    foreach (var n in names)
                        if (NativeLibrary.TryGetExport(h, n, out var p)) return p;
                    throw new EntryPointNotFoundException(names[0]);
                }
                cuInit = (delegate* unmanaged<uint, int>)F("cuInit");
                cuDriverGetVersion = (delegate* unmanaged<int*, int>)F("cuDriverGetVersion");
                cuDeviceGetCount = (delegate* unmanaged<int*, int>)F("cuDeviceGetCount");
                cuDeviceGet = (delegate* unmanaged<int*, int, int>)F("cuDeviceGet");
                cuDeviceGetName = (delegate* unmanaged<byte*, int, int, int>)F("cuDeviceGetName");
                cuDeviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)F("cuDeviceGetAttribute");
                cuDeviceTotalMem = (delegate* unmanaged<nuint*, int, int>)F("cuDeviceTotalMem_v2");
                cuDevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)F("cuDevicePrimaryCtxRetain");
                cuDevicePrimaryCtxRelease = (delegate* unmanaged<int, int>)F("cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
                cuCtxSetCurrent = (delegate* unmanaged<nint, int>)F("cuCtxSetCurrent");
                cuCtxSynchronize = (delegate* unmanaged<int>)F("cuCtxSynchronize");
                cuMemAlloc = (delegate* unmanaged<ulong*, nuint, int>)F("cuMemAlloc_v2");
                cuMemFree = (delegate* unmanaged<ulong, int>)F("cuMemFree_v2");
                cuMemcpyHtoD = (delegate* unmanaged<ulong, void*, nuint, int>)F("cuMemcpyHtoD_v2");
                cuMemcpyDtoH = (delegate* unmanaged<void*, ulong, nuint, int>)F("cuMemcpyDtoH_v2");
                cuMemcpyHtoDAsync = (delegate* unmanaged<ulong, void*, nuint, nint, int>)F("cuMemcpyHtoDAsync_v2");
                cuMemcpyDtoDAsync = (delegate* unmanaged<ulong, ulong, nuint, nint, int>)F("cuMemcpyDtoDAsync_v2");
                cuMemsetD32Async = (delegate* unmanaged<ulong, uint, nuint, nint, int>)F("cuMemsetD32Async");
                cuMemGetInfo = (delegate* unmanaged<nuint*, nuint*, int>)F("cuMemGetInfo_v2");
                cuModuleLoadData = (delegate* unmanaged<nint*, void*, int>)F("cuModuleLoadData");
                cuModuleUnload = (delegate* unmanaged<nint, int>)F("cuModuleUnload");
                cuModuleGetFunction = (delegate* unmanaged<nint*, nint, byte*, int>)F("cuModuleGetFunction");
                cuFuncGetAttribute = (delegate* unmanaged<int*, int, nint, int>)F("cuFuncGetAttribute");
                cuFuncSetAttribute = (delegate* unmanaged<nint, int, int, int>)F("cuFuncSetAttribute");
                cuOccupancyMaxActiveBlocksPerMultiprocessor = (delegate* unmanaged<int*, nint, int, nuint, int>)F("cuOccupancyMaxActiveBlocksPerMultiprocessor");
                cuLaunchKernel = (delegate* unmanaged<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)F("cuLaunchKernel");
                if (NativeLibrary.TryGetExport(h, "cuLaunchKernelEx", out var ex)) cuLaunchKernelEx = (delegate* unmanaged<LaunchConfig*, nint, void**, void**, int>)ex;
                cuStreamCreate = (delegate* unmanaged<nint*, uint, int>)F("cuStreamCreate");
                cuStreamDestroy = (delegate* unmanaged<nint, int>)F("cuStreamDestroy_v2");
                cuStreamSynchronize = (delegate* unmanaged<nint, int>)F("cuStreamSynchronize");
                cuStreamBeginCapture = (delegate* unmanaged<nint, int, int>)F("cuStreamBeginCapture_v2");
                cuStreamEndCapture = (delegate* unmanaged<nint, nint*, int>)F("cuStreamEndCapture");
                cuGraphInstantiateWithFlags = (delegate* unmanaged<nint*, nint, ulong, int>)F("cuGraphInstantiateWithFlags");
                cuGraphLaunch = (delegate* unmanaged<nint, nint, int>)F("cuGraphLaunch");
                cuGraphExecDestroy = (delegate* unmanaged<nint, int>)F("cuGraphExecDestroy");
                cuGraphDestroy = (delegate* unmanaged<nint, int>)F("cuGraphDestroy");
                cuGraphGetNodes = (delegate* unmanaged<nint, nint*, nuint*, int>)F("cuGraphGetNodes");
                cuEventCreate = (delegate* unmanaged<nint*, uint, int>)F("cuEventCreate");
                cuEventDestroy = (delegate* unmanaged<nint, int>)F("cuEventDestroy_v2");
                cuEventRecord = (delegate* unmanaged<nint, nint, int>)F("cuEventRecord");
                cuEventSynchronize = (delegate* unmanaged<nint, int>)F("cuEventSynchronize");
                cuEventElapsedTime = (delegate* unmanaged<float*, nint, nint, int>)F("cuEventElapsedTime_v2", "cuEventElapsedTime");
                nint O(string name) => NativeLibrary.TryGetExport(h, name, out var p) ? p : 0;
                cuMemGetAllocationGranularity = (delegate* unmanaged<nuint*, MemAllocationProp*, int, int>)O("cuMemGetAllocationGranularity");
                cuMemCreate = (delegate* unmanaged<ulong*, nuint, MemAllocationProp*, ulong, int>)O("cuMemCreate");
                cuMemRelease = (delegate* unmanaged<ulong, int>)O("cuMemRelease");
                cuMemAddressReserve = (delegate* unmanaged<ulong*, nuint, nuint, ulong, ulong, int>)O("cuMemAddressReserve");
                cuMemAddressFree = (delegate* unmanaged<ulong, nuint, int>)O("cuMemAddressFree");
                cuMemMap = (delegate* unmanaged<ulong, nuint, nuint, ulong, ulong, int>)O("cuMemMap");
                cuMemUnmap = (delegate* unmanaged<ulong, nuint, int>)O("cuMemUnmap");
                cuMemSetAccess = (delegate* unmanaged<ulong, nuint, MemAccessDesc*, nuint, int>)O("cuMemSetAccess");
                cuGetErrorName = (delegate* unmanaged<int, byte**, int>)F("cuGetErrorName");
                cuGetErrorString = (delegate* unmanaged<int, byte**, int>)F("cuGetErrorString");
            }
            catch (EntryPointNotFoundException e)
            {
                return _unavailable = $"The installed CUDA driver is too old for SparseDecode (it lacks {e.Message}); use the CPU backend.";
            }
            return null;
        }
    }

    /// <summary>Whether the driver maps physical memory into reserved address ranges (CUDA's virtual memory management).</summary>
    public static bool HasVirtualMemory => cuMemMap != null && cuMemCreate != null && cuMemAddressReserve != null && cuMemSetAccess != null
        && cuMemUnmap != null && cuMemRelease != null && cuMemAddressFree != null && cuMemGetAllocationGranularity != null;

    public static void Check(int status, string call)
    {
        if (status != Success) throw new CudaException(call, status, Describe(status));
    }

    public static string Describe(int status)
    {
        byte* name = null, text = null;
        string n = cuGetErrorName != null && cuGetErrorName(status, &name) == Success && name != null
            ? Marshal.PtrToStringUTF8((nint)name)! : $"CUDA error {status}";
        string t = cuGetErrorString != null && cuGetErrorString(status, &text) == Success && text != null
            ? Marshal.PtrToStringUTF8((nint)text)! : "unknown error";
        return $"{n} ({t})";
    }
}
