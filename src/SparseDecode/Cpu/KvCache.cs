using System.Runtime.InteropServices;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Key/value cache of one sequence, in fixed-size pages. A page holds PageSize consecutive positions
/// of every layer and KV head: for each (layer, head) a [PageSize, headDim] block of keys, one of values, and the
/// per-channel min/max of the page's keys (the page summary Quest-style selectors bound scores with). Pages are
/// allocated as the sequence grows, a segment of <see cref="SegmentPages"/> at a time, so memory follows the length,
/// and a sequence frees all of them at once. Within a segment each (layer, head) keeps its pages' key blocks side by
/// side (then its value blocks, and its summaries): decode attention reads one head's rows in runs of at least
/// 32 KB, which the hardware prefetcher follows and which touch few address-translation entries, where one page's
/// 2–4 KB block each would start a new run.
/// Keys and values are stored as f32, f16, bf16 or q8 (<see cref="DType.Q8"/>: bytes with a scale per 32 entries,
/// a quarter of f32's memory and reading time); attention reads them in that type.</summary>
public sealed unsafe class KvCache : IDisposable
{
    private nint[] _segments = new nint[4];
    private int _segmentCount;
    private readonly long _blockBytes;      // one [PageSize, headDim] block
    private readonly long _summaryOffset;   // where the f32 min/max summaries start inside a segment
    private readonly long _segmentBytes;
    private readonly int _segmentShift;     // log2(SegmentPages)
    private readonly long _rowBytes;        // one position's key (or value) of one head
    private readonly int _pageShift;        // log2(PageSize): a position's page and row by shift and mask, not division

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadDim { get; }
    public int PageSize { get; }
    public DType Type { get; }
    public int Capacity { get; }

    /// <summary>Positions whose keys and values are written in every layer.</summary>
    public int Length { get; set; }

    /// <summary>Pages allocated (whole segments).</summary>
    public int PageCount => _segmentCount * SegmentPages;

    /// <summary>Pages per allocation: the fewest (a power of two, at most 64) whose key blocks of one head make 32 KB.</summary>
    public int SegmentPages { get; }

    public KvCache(int layers, int kvHeads, int headDim, DType type, int capacity, int pageSize = 16)
    {
        if (pageSize <= 0 || (pageSize & (pageSize - 1)) != 0) throw new ArgumentException("Page size must be a power of two.");
        Layers = layers;
        KvHeads = kvHeads;
        HeadDim = headDim;
        Type = Checked(type, headDim);
        PageSize = pageSize;
        Capacity = capacity;
        _rowBytes = type.RowBytes(headDim);
        _blockBytes = pageSize * _rowBytes;
        _pageShift = System.Numerics.BitOperations.Log2((uint)pageSize);
        (SegmentPages, _summaryOffset, _segmentBytes) = Segments(layers, kvHeads, headDim, type, pageSize);
        _segmentShift = System.Numerics.BitOperations.Log2((uint)SegmentPages);
    }

    /// <summary>`type`, where it can store heads of `headDim` entries (q8: whole blocks of 32); else one sentence why not.</summary>
    public static DType Checked(DType type, int headDim) => type.StoresRowsOf(headDim) ? type
        : throw new ArgumentException($"A {type.Name()} KV cache stores heads in blocks of {DTypeExtensions.Q8Block} entries; this model's heads have {headDim} (use f32, f16 or bf16).");

    /// <summary>A segment's pages, where its summaries start and its bytes, for this shape.</summary>
    private static (int Pages, long SummaryOffset, long Bytes) Segments(int layers, int kvHeads, int headDim, DType type, int pageSize)
    {
        long blockBytes = pageSize * type.RowBytes(headDim);
        int pages = (int)Math.Clamp(System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)Math.Max(1, (32 << 10) / blockBytes)), 1, 64);
        long summaryOffset = blockBytes * pages * layers * kvHeads * 2;
        return (pages, summaryOffset, summaryOffset + (long)pages * layers * kvHeads * 2 * headDim * sizeof(float));
    }

    /// <summary>The most bytes a cache of this shape allocates for `capacity` positions: whole segments, with their
    /// page summaries.</summary>
    public static long BytesFor(ModelConfig c, DType type, int capacity, int pageSize = 16)
    {
        var (pages, _, bytes) = Segments(c.NumLayers, c.NumKvHeads, c.HeadDim, type, pageSize);
        long segments = ((long)capacity + (long)pages * pageSize - 1) / ((long)pages * pageSize);
        return segments * bytes;
    }

    public static KvCache For(ModelConfig c, DType type, int capacity, int pageSize = 16) =>
        new(c.NumLayers, c.NumKvHeads, c.HeadDim, type, capacity, pageSize);

    /// <summary>Bytes of keys and values stored per position (all layers and heads).</summary>
    public long BytesPerPosition => 2L * Layers * KvHeads * _rowBytes;

    private byte* Segment(int page) => (byte*)_segments[page >> _segmentShift];

    /// <summary>Keys of (layer, head) for positions [page·PageSize, (page+1)·PageSize), row-major; the key blocks of a
    /// segment's pages follow one another.</summary>
    public byte* KeyBlock(int layer, int head, int page) =>
        Segment(page) + ((long)(layer * KvHeads + head) * 2 * SegmentPages + (page & (SegmentPages - 1))) * _blockBytes;

    public byte* ValueBlock(int layer, int head, int page) => KeyBlock(layer, head, page) + SegmentPages * _blockBytes;

    public byte* Key(int layer, int head, int pos) =>
        KeyBlock(layer, head, pos >> _pageShift) + (pos & (PageSize - 1)) * _rowBytes;

    public byte* Value(int layer, int head, int pos) =>
        ValueBlock(layer, head, pos >> _pageShift) + (pos & (PageSize - 1)) * _rowBytes;

    /// <summary>Per-channel minimum of the page's keys (f32, headDim values); the maximum follows it.</summary>
    public float* KeyMin(int layer, int head, int page) =>
        (float*)(Segment(page) + _summaryOffset) + ((long)(layer * KvHeads + head) * SegmentPages + (page & (SegmentPages - 1))) * 2 * HeadDim;

    public float* KeyMax(int layer, int head, int page) => KeyMin(layer, head, page) + HeadDim;

    /// <summary>Makes room for positions below `length`.</summary>
    public void EnsureCapacity(int length)
    {
        if (length > Capacity)
            throw new InvalidOperationException($"The sequence needs {length} positions but the cache holds at most {Capacity}.");
        int needed = ((length + PageSize - 1) / PageSize + SegmentPages - 1) >> _segmentShift;
        while (_segmentCount < needed)
        {
            if (_segmentCount == _segments.Length) Array.Resize(ref _segments, _segments.Length * 2);
            var p = (byte*)NativeMemory.AlignedAlloc((nuint)_segmentBytes, 64);
            // Summaries start empty: min = +inf, max = -inf, so the first key sets them.
            for (long page = 0; page < (long)Layers * KvHeads * SegmentPages; page++)
            {
                var mn = (float*)(p + _summaryOffset) + page * 2 * HeadDim;
                new Span<float>(mn, HeadDim).Fill(float.PositiveInfinity);
                new Span<float>(mn + HeadDim, HeadDim).Fill(float.NegativeInfinity);
            }
            _segments[_segmentCount++] = (nint)p;
        }
    }

    /// <summary>Stores the keys and values of all KV heads of one layer at one position (f32 in, stored type out).</summary>
    public void Write(int layer, int pos, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        EnsureCapacity(pos + 1);
        Span<float> stored = stackalloc float[HeadDim];
        for (int h = 0; h < KvHeads; h++)
        {
            var k = keys.Slice(h * HeadDim, HeadDim);
            ElementConvert.FromSingle(k, Type, Key(layer, h, pos));
            ElementConvert.FromSingle(values.Slice(h * HeadDim, HeadDim), Type, Value(layer, h, pos));
            // The summary bounds the key as stored (after rounding), so Quest's bound holds for what attention reads.
            float* mn = KeyMin(layer, h, pos / PageSize), mx = mn + HeadDim;
            ElementConvert.ToSingle(Type, Key(layer, h, pos), stored);
            for (int i = 0; i < HeadDim; i++)
            {
                if (stored[i] < mn[i]) mn[i] = stored[i];
                if (stored[i] > mx[i]) mx[i] = stored[i];
            }
        }
    }

    /// <summary>An independent copy of every position (e.g. to decode several methods from one prefill), holding up to
    /// `capacity` positions (default: this cache's), at least Length.</summary>
    public KvCache Clone(int? capacity = null) => ClonePrefix(Length, capacity ?? Capacity);

    /// <summary>A copy of the first `length` positions in a cache of `capacity` (at least `length`): only the segments
    /// that hold them are copied, and the page summaries are those of the copied positions.</summary>
    public KvCache ClonePrefix(int length, int capacity)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"The cache holds {Length} positions, not {length}.");
        if (capacity < length) throw new ArgumentOutOfRangeException(nameof(capacity), $"A copy of {length} positions cannot hold only {capacity}.");
        var c = new KvCache(Layers, KvHeads, HeadDim, Type, capacity, PageSize);
        c.EnsureCapacity(length);
        for (int i = 0; i < c._segmentCount; i++)
            Buffer.MemoryCopy((void*)_segments[i], (void*)c._segments[i], _segmentBytes, _segmentBytes);
        c.Length = length;
        c.Truncate(length); // the last copied page may hold positions past `length`: its summary is rebuilt without them
        return c;
    }

    /// <summary>Forgets positions from `length` on (their pages are kept for reuse; summaries are rebuilt).</summary>
    public void Truncate(int length)
    {
        if (length > Length) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
        int firstPartial = length / PageSize;
        Span<float> k = stackalloc float[HeadDim];
        for (int page = firstPartial; page < PageCount; page++)
            for (int l = 0; l < Layers; l++)
                for (int h = 0; h < KvHeads; h++)
                {
                    float* mn = KeyMin(l, h, page), mx = mn + HeadDim;
                    new Span<float>(mn, HeadDim).Fill(float.PositiveInfinity);
                    new Span<float>(mx, HeadDim).Fill(float.NegativeInfinity);
                    for (int pos = page * PageSize; pos < Math.Min(length, (page + 1) * PageSize); pos++)
                    {
                        ElementConvert.ToSingle(Type, Key(l, h, pos), k);
                        for (int i = 0; i < HeadDim; i++) { mn[i] = Math.Min(mn[i], k[i]); mx[i] = Math.Max(mx[i], k[i]); }
                    }
                }
    }

    public long AllocatedBytes => _segmentCount * _segmentBytes;

    public void Dispose()
    {
        for (int i = 0; i < _segmentCount; i++) NativeMemory.AlignedFree((void*)_segments[i]);
        _segmentCount = 0;
        Length = 0;
    }
}
