using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

using static SparseDecode.Cuda.Interop.CudaDriver;

namespace SparseDecode.Cuda.Interop;

/// <summary>Device memory (cuMemAlloc). Copies are synchronous; kernels and asynchronous copies take
/// <see cref="Pointer"/>.</summary>
internal sealed unsafe class DeviceBuffer : IDisposable
{
    private readonly CudaDevice _device;
    private readonly bool _owns = true;

    public ulong Pointer { get; private set; }
    public long Bytes { get; }

    internal DeviceBuffer(CudaDevice device, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        _device = device;
        device.MakeCurrent();
        ulong p;
        int status = cuMemAlloc(&p, (nuint)bytes);
        if (status != Success)
            throw new CudaException("cuMemAlloc", status, $"{Describe(status)} while allocating {bytes / 1e6:F1} MB");
        Pointer = p;
        Bytes = bytes;
    }

    private DeviceBuffer(CudaDevice device, ulong pointer, long bytes)
    {
        _device = device;
        Pointer = pointer;
        Bytes = bytes;
        _owns = false;
    }

    /// <summary>The `bytes` bytes from `offset` as a buffer of their own that frees nothing (kernels that take a
    /// buffer see only that part: one group of a step's rows).</summary>
    public DeviceBuffer Slice(long offset, long bytes)
    {
        if (offset < 0 || bytes <= 0 || offset + bytes > Bytes) throw new ArgumentOutOfRangeException(nameof(offset), $"Bytes {offset} to {offset + bytes} of a buffer of {Bytes}.");
        return new DeviceBuffer(_device, At(offset), bytes);
    }

    /// <summary>Address of the byte at `offset`.</summary>
    public ulong At(long offset) => Pointer + (ulong)offset;

    public void Upload<T>(ReadOnlySpan<T> data, long byteOffset = 0) where T : unmanaged
    {
        long n = (long)data.Length * sizeof(T);
        if (n == 0) return;
        if (byteOffset < 0 || byteOffset + n > Bytes) throw new ArgumentOutOfRangeException(nameof(data), "Upload past the end of the device buffer.");
        _device.MakeCurrent();
        fixed (T* p = data) Check(cuMemcpyHtoD(Pointer + (ulong)byteOffset, p, (nuint)n), "cuMemcpyHtoD");
    }

    /// <summary>Copies host data in stream order: work queued on `stream` afterwards sees it (a plain copy is
    /// not ordered with a non-blocking stream). The host data is staged before the call returns.</summary>
    public void UploadAsync<T>(ReadOnlySpan<T> data, CudaStream stream, long byteOffset = 0) where T : unmanaged
    {
        long n = (long)data.Length * sizeof(T);
        if (n == 0) return;
        if (byteOffset < 0 || byteOffset + n > Bytes) throw new ArgumentOutOfRangeException(nameof(data), "Upload past the end of the device buffer.");
        _device.MakeCurrent();
        fixed (T* p = data) Check(cuMemcpyHtoDAsync(Pointer + (ulong)byteOffset, p, (nuint)n, stream.Handle), "cuMemcpyHtoDAsync");
    }

    public void Download<T>(Span<T> data, long byteOffset = 0) where T : unmanaged
    {
        long n = (long)data.Length * sizeof(T);
        if (n == 0) return;
        if (byteOffset < 0 || byteOffset + n > Bytes) throw new ArgumentOutOfRangeException(nameof(data), "Download past the end of the device buffer.");
        _device.MakeCurrent();
        Check(cuCtxSynchronize(), "cuCtxSynchronize");
        fixed (T* p = data) Check(cuMemcpyDtoH(p, Pointer + (ulong)byteOffset, (nuint)n), "cuMemcpyDtoH");
    }

    public T[] Download<T>(int count, long byteOffset = 0) where T : unmanaged
    {
        var a = new T[count];
        Download<T>(a, byteOffset);
        return a;
    }

    /// <summary>Fills `count` 32-bit words with `word` (0xFFFFFFFF = a NaN / -1 poison) on the stream.</summary>
    public void Fill32(uint word, long count, CudaStream stream, long byteOffset = 0)
    {
        if (byteOffset + count * 4 > Bytes) throw new ArgumentOutOfRangeException(nameof(count));
        Check(cuMemsetD32Async(Pointer + (ulong)byteOffset, word, (nuint)count, stream.Handle), "cuMemsetD32Async");
    }

    public void Dispose()
    {
        if (Pointer == 0) return;
        if (!_owns)
        {
            Pointer = 0;
            return;
        }
        _device.MakeCurrent();
        cuMemFree(Pointer);
        Pointer = 0;
    }
}
