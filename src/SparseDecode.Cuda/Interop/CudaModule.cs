using System.Text;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using static SparseDecode.Cuda.Interop.CudaDriver;

namespace SparseDecode.Cuda.Interop;

/// <summary>A loaded cubin and its kernels by name.</summary>
internal sealed unsafe class CudaModule : IDisposable
{
    private readonly CudaDevice _device;
    private nint _module;
    private readonly Dictionary<string, CudaFunction> _functions = new(StringComparer.Ordinal);

    public bool FromCache { get; }
    public string CompileLog { get; }

    /// <summary>Whether every kernel of the module begins with common.cuh's step_prologue, so that it may be launched
    /// before the kernel ahead of it has finished (the backend's own sources; not the diagnostics').</summary>
    private readonly bool _programmatic;

    private CudaModule(CudaDevice device, byte[] image, bool fromCache, string log, bool programmatic)
    {
        _device = device;
        _programmatic = programmatic;
        FromCache = fromCache;
        CompileLog = log;
        device.MakeCurrent();
        nint m;
        fixed (byte* p = image) Check(cuModuleLoadData(&m, p), "cuModuleLoadData");
        _module = m;
    }

    /// <summary>Compiles (or takes from the disk cache) the embedded `fileName` for this device and loads it.</summary>
    public static CudaModule Load(CudaDevice device, string fileName)
    {
        var image = KernelCompiler.Compile(fileName, device.Architecture, out bool cached, out string log);
        return new CudaModule(device, image, cached, log, programmatic: true);
    }

    /// <summary>Compiles (or takes from the disk cache) kernel source kept outside the library, named `fileName`.</summary>
    public static CudaModule Load(CudaDevice device, string fileName, string source)
    {
        var image = KernelCompiler.Compile(fileName, source, device.Architecture, out bool cached, out string log);
        return new CudaModule(device, image, cached, log, programmatic: false);
    }

    public CudaFunction this[string name]
    {
        get
        {
            if (_functions.TryGetValue(name, out var f)) return f;
            _device.MakeCurrent();
            nint h;
            var bytes = Encoding.UTF8.GetBytes(name + "\0");
            fixed (byte* b = bytes) Check(cuModuleGetFunction(&h, _module, b), $"cuModuleGetFunction({name})");
            return _functions[name] = new CudaFunction(name, h, _programmatic ? _device : null);
        }
    }

    public void Dispose()
    {
        if (_module == 0) return;
        _device.MakeCurrent();
        cuModuleUnload(_module);
        _module = 0;
    }
}

/// <summary>One kernel: its launch and its compiled resources (registers, local memory: a spill shows there).</summary>
internal sealed unsafe class CudaFunction
{
    public string Name { get; }
    internal nint Handle { get; }

    /// <summary>The device whose ProgrammaticLaunch setting applies (null: the kernel has no step_prologue).</summary>
    private readonly CudaDevice? _programmatic;

    internal CudaFunction(string name, nint handle, CudaDevice? programmatic)
    {
        Name = name;
        Handle = handle;
        _programmatic = programmatic;
    }

    public int Registers => Attribute(FuncAttrNumRegs);
    public int LocalBytes => Attribute(FuncAttrLocalSizeBytes);
    public int StaticSharedBytes => Attribute(FuncAttrSharedSizeBytes);

    /// <summary>Lets launches ask for up to `bytes` of dynamic shared memory (past the 48 KB given without asking).</summary>
    public void AllowDynamicShared(int bytes) =>
        Check(cuFuncSetAttribute(Handle, FuncAttrMaxDynamicSharedSizeBytes, bytes), "cuFuncSetAttribute");

    private int Attribute(int a)
    {
        int v;
        Check(cuFuncGetAttribute(&v, a, Handle), "cuFuncGetAttribute");
        return v;
    }

    public int ActiveBlocksPerMultiprocessor(int blockSize, int dynamicShared = 0)
    {
        int v;
        Check(cuOccupancyMaxActiveBlocksPerMultiprocessor(&v, Handle, blockSize, (nuint)dynamicShared), "cuOccupancyMaxActiveBlocksPerMultiprocessor");
        return v;
    }

    /// <remarks>Inside a <see cref="CudaDevice.ProgrammaticLaunchFor"/> scope, a backend kernel is launched with
    /// programmatic stream serialization: it may begin while the kernel ahead of it runs its last blocks, and waits
    /// for it in its prologue (common.cuh's step_prologue).</remarks>
    public void Launch((int X, int Y, int Z) grid, int block, CudaStream stream, ref KernelArgs args, int sharedBytes = 0)
    {
        if (grid.X <= 0 || grid.Y <= 0 || grid.Z <= 0) return;
        fixed (ulong* v = args.Values)
        {
            var p = stackalloc void*[args.Count];
            for (int i = 0; i < args.Count; i++) p[i] = v + i;
            if (_programmatic is { ProgrammaticLaunchNow: true })
            {
                var attribute = new LaunchAttribute { Id = LaunchAttributeProgrammaticStreamSerialization, Value = 1 };
                var config = new LaunchConfig
                {
                    GridX = (uint)grid.X, GridY = (uint)grid.Y, GridZ = (uint)grid.Z, BlockX = (uint)block, BlockY = 1, BlockZ = 1,
                    SharedBytes = (uint)sharedBytes, Stream = stream.Handle, Attributes = &attribute, AttributeCount = 1,
                };
                Check(cuLaunchKernelEx(&config, Handle, p, null), Name);
            }
            else
                Check(cuLaunchKernel(Handle, (uint)grid.X, (uint)grid.Y, (uint)grid.Z, (uint)block, 1, 1, (uint)sharedBytes,
                    stream.Handle, p, null), Name);
        }
    }
}

/// <summary>Kernel parameters, each in an 8-byte slot (a 4-byte int or float sits in the low half, as the
/// little-endian ABI reads it), built on the stack: a launch allocates nothing.</summary>
internal unsafe struct KernelArgs
{
    internal fixed ulong Values[32];
    public int Count { get; private set; }

    private void Put(ulong v)
    {
        if (Count == 32) throw new InvalidOperationException("More than 32 kernel parameters.");
        Values[Count++] = v;
    }

    public void Add(ulong devicePointer) => Put(devicePointer);
    public void Add(DeviceBuffer? buffer) => Put(buffer?.Pointer ?? 0);
    public void Add(int v) => Put((uint)v);
    public void Add(long v) => Put((ulong)v);
    public void Add(float v) => Put(BitConverter.SingleToUInt32Bits(v));
    public void Add(double v) => Put(BitConverter.DoubleToUInt64Bits(v));
}
