using SparseDecode.Cuda;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>One layer's bf16 KV cache for a batch of sequences on the device: K and V are
/// [batch][kvHeads][capacity][128], the per-page per-channel key min and max (Quest's summaries) are
/// [batch][kvHeads][capacity / pageSize][128]; the kernels take per-sequence base addresses and lengths from
/// small device arrays, so sequences of different lengths share one launch.</summary>
internal sealed class KvLayerBatch : IDisposable
{
    public const int HeadDim = DecodeKernels.HeadDim;

    public int Batch { get; }
    public int KvHeads { get; }
    public int QueryHeads { get; }
    public int Capacity { get; }
    public int PageSize { get; }
    public int PageCapacity => (Capacity + PageSize - 1) / PageSize;
    public int Group => QueryHeads / KvHeads;
    public long HeadStride => (long)Capacity * HeadDim;
    public long PageHeadStride => (long)PageCapacity * HeadDim;
    public long SequenceBytes => KvHeads * HeadStride * 2;

    public DeviceBuffer K { get; }
    public DeviceBuffer V { get; }
    public DeviceBuffer PageMin { get; }
    public DeviceBuffer PageMax { get; }
    public DeviceBuffer KBases { get; }
    public DeviceBuffer VBases { get; }
    public DeviceBuffer MinBases { get; }
    public DeviceBuffer MaxBases { get; }
    public DeviceBuffer Lengths { get; }
    private int[] _lengths;
    public IReadOnlyList<int> HostLengths => _lengths;
    public int MaxLength => _lengths.Max();

    public KvLayerBatch(CudaDevice device, int batch, int kvHeads, int queryHeads, int capacity, int pageSize, IReadOnlyList<int> lengths)
    {
        if (batch < 1 || kvHeads < 1 || queryHeads % kvHeads != 0 || queryHeads / kvHeads != 4)
            throw new ArgumentException("The CUDA attention kernels take groups of 4 query heads per KV head (Llama-3 GQA).");
        if (lengths.Count != batch || lengths.Any(l => l < 0 || l > capacity))
            throw new ArgumentException($"Need {batch} lengths in [0, {capacity}].");
        Batch = batch;
        KvHeads = kvHeads;
        QueryHeads = queryHeads;
        Capacity = capacity;
        PageSize = pageSize;
        long bytes = SequenceBytes, pageBytes = KvHeads * PageHeadStride * 2;
        K = device.Allocate(bytes * batch);
        V = device.Allocate(bytes * batch);
        PageMin = device.Allocate(pageBytes * batch);
        PageMax = device.Allocate(pageBytes * batch);
        KBases = device.Upload<ulong>(Enumerable.Range(0, batch).Select(b => K.At(b * bytes)).ToArray());
        VBases = device.Upload<ulong>(Enumerable.Range(0, batch).Select(b => V.At(b * bytes)).ToArray());
        MinBases = device.Upload<ulong>(Enumerable.Range(0, batch).Select(b => PageMin.At(b * pageBytes)).ToArray());
        MaxBases = device.Upload<ulong>(Enumerable.Range(0, batch).Select(b => PageMax.At(b * pageBytes)).ToArray());
        _lengths = lengths.ToArray();
        Lengths = device.Upload<int>(_lengths);
    }

    /// <summary>This batch as the kernels see it: one row per sequence, launches planned for the longest.</summary>
    public KvView View => new(KBases.Pointer, VBases.Pointer, MinBases.Pointer, MaxBases.Pointer, Lengths.Pointer,
        HeadStride, PageHeadStride, PageSize, Batch, KvHeads, QueryHeads, MaxLength);

    public static implicit operator KvView(KvLayerBatch kv) => kv.View;

    /// <summary>Element offset of (sequence, kv head, position, channel 0) in K or V.</summary>
    public long Offset(int b, int h, int pos) => ((long)b * KvHeads + h) * HeadStride + (long)pos * HeadDim;

    public void Dispose()
    {
        foreach (var d in new[] { K, V, PageMin, PageMax, KBases, VBases, MinBases, MaxBases, Lengths }) d.Dispose();
    }
}
