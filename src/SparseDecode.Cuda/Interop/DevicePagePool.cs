
using static SparseDecode.Cuda.Interop.CudaDriver;

namespace SparseDecode.Cuda.Interop;

/// <summary>Physical device memory made once, in pages of the driver's mapping granularity, that is mapped into
/// reserved address ranges (<see cref="DeviceAddressRange"/>) page by page as they are needed and unmapped when they are
/// not: memory follows use while every address stays where it was, so kernels and captured graphs that hold addresses
/// are untouched (CUDA's virtual memory management).</summary>
internal sealed unsafe class DevicePagePool : IDisposable
{
    private readonly CudaDevice _device;
    // one physical allocation per page: the driver maps an allocation only from its start
    private readonly ulong[] _pages;

    public long PageBytes { get; }
    public PageLedger Ledger { get; }

    /// <summary>The driver's smallest mapping unit on `device` (2 MiB on current GPUs); 0 where the driver has no
    /// virtual memory management.</summary>
    public static long Granularity(CudaDevice device)
    {
        if (!HasVirtualMemory) return 0;
        device.MakeCurrent();
        var prop = Properties(device);
        nuint g;
        return cuMemGetAllocationGranularity(&g, &prop, MemGranularityMinimum) == Success ? (long)g : 0;
    }

    private static MemAllocationProp Properties(CudaDevice device) =>
        new() { Type = MemAllocationTypePinned, LocationType = MemLocationTypeDevice, LocationId = device.Ordinal };

    /// <summary>Makes `pages` pages of `pageBytes` (the granularity) on `device`; throws <see cref="CudaException"/>
    /// naming the size when the GPU has not that much free.</summary>
    public DevicePagePool(CudaDevice device, int pages, long pageBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pages, 1);
        _device = device;
        PageBytes = pageBytes;
        _pages = new ulong[pages];
        device.MakeCurrent();
        var prop = Properties(device);
        try
        {
            for (int p = 0; p < pages; p++)
            {
                ulong h;
                int status = cuMemCreate(&h, (nuint)pageBytes, &prop, 0);
                if (status != Success)
                    throw new CudaException("cuMemCreate", status, $"{Describe(status)} while making {pages * pageBytes / 1e9:F1} GB of KV cache pages");
                _pages[p] = h;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        Ledger = new PageLedger(pages);
    }

    /// <summary>Maps page `page` at `address` (page-aligned, inside a reserved range) for reading and writing.</summary>
    public void Map(ulong address, int page)
    {
        Check(cuMemMap(address, (nuint)PageBytes, 0, _pages[page], 0), "cuMemMap");
        var access = new MemAccessDesc { LocationType = MemLocationTypeDevice, LocationId = _device.Ordinal, Flags = MemAccessReadWrite };
        int status = cuMemSetAccess(address, (nuint)PageBytes, &access, 1);
        if (status != Success)
        {
            cuMemUnmap(address, (nuint)PageBytes);
            Check(status, "cuMemSetAccess");
        }
    }

    /// <summary>Unmaps the page mapped at `address`. No work that reads or writes it may still be queued.</summary>
    public void Unmap(ulong address) => Check(cuMemUnmap(address, (nuint)PageBytes), "cuMemUnmap");

    public void Dispose()
    {
        foreach (ulong h in _pages)
            if (h != 0) cuMemRelease(h);
        Array.Clear(_pages);
    }
}

/// <summary>A reserved range of device addresses with nothing behind it until pages are mapped into it
/// (<see cref="DevicePagePool.Map"/>).</summary>
internal sealed unsafe class DeviceAddressRange : IDisposable
{
    public ulong Pointer { get; private set; }
    public long Bytes { get; }

    public DeviceAddressRange(CudaDevice device, long bytes, long alignment)
    {
        device.MakeCurrent();
        ulong p;
        int status = cuMemAddressReserve(&p, (nuint)bytes, (nuint)alignment, 0, 0);
        if (status != Success) throw new CudaException("cuMemAddressReserve", status, $"{Describe(status)} while reserving {bytes / 1e9:F1} GB of addresses");
        Pointer = p;
        Bytes = bytes;
    }

    public ulong At(long offset) => Pointer + (ulong)offset;

    public void Dispose()
    {
        if (Pointer == 0) return;
        cuMemAddressFree(Pointer, (nuint)Bytes);
        Pointer = 0;
    }
}
