using SparseDecode.Cuda;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>The kernels only the checks and benchmarks need (Kernels/diagnostics.cu, embedded in this assembly,
/// compiled by the library's NVRTC path): random bf16/f32 data for real shapes without a checkpoint, and a pure
/// read of a buffer for the device's read-bandwidth floor.</summary>
internal sealed class DiagnosticKernels : IDisposable
{
    public const string SourceFile = "diagnostics.cu";
    /// <summary>Where the csproj embeds Kernels/*.cu in this assembly.</summary>
    public const string ResourcePrefix = "SparseDecode.Diagnostics.Kernels.";
    private readonly CudaModule _module;

    public CudaDevice Device { get; }

    public DiagnosticKernels(CudaDevice device)
    {
        Device = device;
        _module = CudaModule.Load(device, SourceFile,
            KernelSource.Read(SourceFile, typeof(DiagnosticKernels).Assembly, ResourcePrefix));
    }

    /// <summary>Uniform values in [-scale, scale) as bf16, from a counter-based hash of (index, seed).</summary>
    public void FillRandomBf16(DeviceBuffer buffer, long count, uint seed, float scale, CudaStream stream)
    {
        var a = new KernelArgs();
        a.Add(buffer); a.Add(count); a.Add((int)seed); a.Add(scale);
        _module["fill_random_bf16"].Launch((Device.Multiprocessors * 8, 1, 1), 256, stream, ref a);
    }

    public void FillRandomF32(DeviceBuffer buffer, long count, uint seed, float scale, CudaStream stream)
    {
        var a = new KernelArgs();
        a.Add(buffer); a.Add(count); a.Add((int)seed); a.Add(scale);
        _module["fill_random_f32"].Launch((Device.Multiprocessors * 8, 1, 1), 256, stream, ref a);
    }

    /// <summary>Reads `bytes` (a multiple of 16) of the buffer and writes nothing: for the read-bandwidth floor.</summary>
    public void ReadAll(DeviceBuffer buffer, long bytes, DeviceBuffer sink, CudaStream stream)
    {
        var a = new KernelArgs();
        a.Add(buffer); a.Add(bytes / 16); a.Add(sink);
        _module["read_bytes"].Launch((Device.Multiprocessors * 8, 1, 1), 512, stream, ref a);
    }

    public void Dispose() => _module.Dispose();
}
