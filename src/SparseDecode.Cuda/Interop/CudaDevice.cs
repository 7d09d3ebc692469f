using System.Runtime.InteropServices;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using static SparseDecode.Cuda.Interop.CudaDriver;

namespace SparseDecode.Cuda.Interop;

/// <summary>One GPU with its primary context. <see cref="Open"/> detects a missing driver or GPU up front and says
/// so in one sentence (<see cref="CudaUnavailableException"/>); <see cref="Probe"/> answers the same without throwing.
/// Every public entry point of the CUDA backend makes the context current on the calling thread first.</summary>
internal sealed unsafe class CudaDevice : IDisposable
{
    private nint _context;

    public int Ordinal { get; }
    public string Name { get; }
    public int ComputeMajor { get; }
    public int ComputeMinor { get; }
    public int Multiprocessors { get; }
    public long L2Bytes { get; }
    public long TotalMemory { get; }
    public int DriverVersion { get; }
    /// <summary>"sm_90" for an H100.</summary>
    public string Architecture => $"sm_{ComputeMajor}{ComputeMinor}";

    /// <summary>Whether the backend's kernels may be launched with programmatic dependent launch (each may begin
    /// while the one ahead of it in the stream runs its last blocks; see CudaFunction.Launch), inside the scopes that
    /// ask for it (<see cref="ProgrammaticLaunchFor"/>: the one-row decode step). On by default from compute
    /// capability 9.0 with a driver that has cuLaunchKernelEx; a benchmark turns it off to time the difference.</summary>
    public bool ProgrammaticLaunch
    {
        get => _programmaticLaunch;
        set => _programmaticLaunch = value && SupportsProgrammaticLaunch;
    }

    private bool _programmaticLaunch, _programmaticScope;

    /// <summary>Whether a launch now uses programmatic dependent launch.</summary>
    internal bool ProgrammaticLaunchNow => _programmaticLaunch && _programmaticScope;

    /// <summary>Launches queued until the scope is disposed use programmatic dependent launch if `wanted` (and
    /// <see cref="ProgrammaticLaunch"/>); the previous state returns after it.</summary>
    public ProgrammaticLaunchScope ProgrammaticLaunchFor(bool wanted) => new(this, wanted);

    public readonly struct ProgrammaticLaunchScope : IDisposable
    {
        private readonly CudaDevice _device;
        private readonly bool _previous;

        internal ProgrammaticLaunchScope(CudaDevice device, bool wanted)
        {
            _device = device;
            _previous = device._programmaticScope;
            device._programmaticScope = wanted;
        }

        public void Dispose() => _device._programmaticScope = _previous;
    }

    private bool SupportsProgrammaticLaunch => ComputeMajor >= 9 && cuLaunchKernelEx != null;

    private CudaDevice(int ordinal)
    {
        Ordinal = ordinal;
        int dev, v;
        Check(cuDeviceGet(&dev, ordinal), "cuDeviceGet");
        var name = stackalloc byte[256];
        Check(cuDeviceGetName(name, 256, dev), "cuDeviceGetName");
        Name = Marshal.PtrToStringUTF8((nint)name) ?? "";
        ComputeMajor = Attribute(dev, AttrComputeCapabilityMajor);
        ComputeMinor = Attribute(dev, AttrComputeCapabilityMinor);
        _programmaticLaunch = SupportsProgrammaticLaunch;
        Multiprocessors = Attribute(dev, AttrMultiprocessorCount);
        L2Bytes = Attribute(dev, AttrL2CacheSize);
        nuint total;
        Check(cuDeviceTotalMem(&total, dev), "cuDeviceTotalMem");
        TotalMemory = (long)total;
        Check(cuDriverGetVersion(&v), "cuDriverGetVersion");
        DriverVersion = v;
        nint ctx;
        Check(cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
        _context = ctx;
        MakeCurrent();
    }

    private static int Attribute(int dev, int attr)
    {
        int v;
        Check(cuDeviceGetAttribute(&v, attr, dev), "cuDeviceGetAttribute");
        return v;
    }

    /// <summary>Null when a GPU can be opened, else the one-sentence reason it cannot.</summary>
    public static string? Probe()
    {
        var reason = Load();
        if (reason != null) return reason;
        int status = cuInit(0);
        if (status == ErrorNoDevice) return "The CUDA driver is installed but reports no GPU; use the CPU backend.";
        if (status != Success) return $"The CUDA driver could not start: {Describe(status)}.";
        int count;
        status = cuDeviceGetCount(&count);
        if (status != Success) return $"The CUDA driver could not count GPUs: {Describe(status)}.";
        return count == 0 ? "The CUDA driver is installed but reports no GPU; use the CPU backend." : null;
    }

    /// <summary>GPUs this process sees (after CUDA_VISIBLE_DEVICES); throws the one-sentence reason when none can be used.</summary>
    public static int Count()
    {
        var reason = Probe();
        if (reason != null) throw new CudaUnavailableException(reason);
        int count;
        Check(cuDeviceGetCount(&count), "cuDeviceGetCount");
        return count;
    }

    public static CudaDevice Open(int ordinal = 0)
    {
        var reason = Probe();
        if (reason != null) throw new CudaUnavailableException(reason);
        int count;
        Check(cuDeviceGetCount(&count), "cuDeviceGetCount");
        if (ordinal < 0 || ordinal >= count)
            throw new CudaUnavailableException($"GPU {ordinal} was asked for but this machine has {count}.");
        return new CudaDevice(ordinal);
    }

    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_context == 0, this);
        Check(cuCtxSetCurrent(_context), "cuCtxSetCurrent");
    }

    public void Synchronize()
    {
        MakeCurrent();
        Check(cuCtxSynchronize(), "cuCtxSynchronize");
    }

    public (long Free, long Total) MemoryInfo()
    {
        MakeCurrent();
        nuint f, t;
        Check(cuMemGetInfo(&f, &t), "cuMemGetInfo");
        return ((long)f, (long)t);
    }

    public DeviceBuffer Allocate(long bytes) => new(this, bytes);

    public DeviceBuffer Upload<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        var b = new DeviceBuffer(this, Math.Max(1, data.Length) * (long)sizeof(T));
        b.Upload(data);
        return b;
    }

    public void Dispose()
    {
        if (_context == 0) return;
        int dev;
        if (cuDeviceGet(&dev, Ordinal) == Success) cuDevicePrimaryCtxRelease(dev);
        _context = 0;
    }
}
