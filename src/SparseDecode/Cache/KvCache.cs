using System.Runtime.InteropServices;
using SparseDecode.Model;

namespace SparseDecode.Cache;

/// <summary>Key/value cache of one sequence, in fixed-size pages. A page holds PageSize consecutive positions
/// of every layer and KV head: for each (layer, head) a [PageSize, headDim] block of keys, one of values, and the
/// per-channel min/max of the page's keys (the page summary Quest-style selectors bound scores with). Pages are
/// allocated as the sequence grows, so memory follows the length, and a sequence frees all of its pages at once.
/// Keys and values are stored as f32, f16 or bf16; attention reads them in that type.</summary>
public sealed unsafe class KvCache : IDisposable
{
    private nint[] _pages = new nint[16];
    private int _pageCount;
    private readonly long _blockBytes;      // one [PageSize, headDim] block
    private readonly long _summaryOffset;   // where the f32 min/max summaries start inside a page
    private readonly long _pageBytes;
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

    public int PageCount => _pageCount;

    public KvCache(int layers, int kvHeads, int headDim, DType type, int capacity, int pageSize = 16)
    {
        if (pageSize <= 0 || (pageSize & (pageSize - 1)) != 0) throw new ArgumentException("Page size must be a power of two.");
        Layers = layers;
        KvHeads = kvHeads;
        HeadDim = headDim;
        Type = type;
        PageSize = pageSize;
        Capacity = capacity;
        _rowBytes = (long)headDim * type.SizeInBytes();
        _blockBytes = pageSize * _rowBytes;
        _pageShift = System.Numerics.BitOperations.Log2((uint)pageSize);
        _summaryOffset = _blockBytes * layers * kvHeads * 2;
        _pageBytes = _summaryOffset + (long)layers * kvHeads * 2 * headDim * sizeof(float);
    }

    public static KvCache For(ModelConfig c, DType type, int capacity, int pageSize = 16) =>
        new(c.NumLayers, c.NumKvHeads, c.HeadDim, type, capacity, pageSize);

    /// <summary>Bytes of keys and values stored per position (all layers and heads).</summary>
    public long BytesPerPosition => 2L * Layers * KvHeads * HeadDim * Type.SizeInBytes();

    private byte* Page(int page) => (byte*)_pages[page];

    /// <summary>Keys of (layer, head) for positions [page·PageSize, (page+1)·PageSize), row-major.</summary>
    public byte* KeyBlock(int layer, int head, int page) => Page(page) + ((long)(layer * KvHeads + head) * 2) * _blockBytes;

    public byte* ValueBlock(int layer, int head, int page) => KeyBlock(layer, head, page) + _blockBytes;

    public byte* Key(int layer, int head, int pos) =>
        KeyBlock(layer, head, pos >> _pageShift) + (pos & (PageSize - 1)) * _rowBytes;

    public byte* Value(int layer, int head, int pos) =>
        ValueBlock(layer, head, pos >> _pageShift) + (pos & (PageSize - 1)) * _rowBytes;

    /// <summary>Per-channel minimum of the page's keys (f32, headDim values); the maximum follows it.</summary>
    public float* KeyMin(int layer, int head, int page) =>
        (float*)(Page(page) + _summaryOffset) + (long)(layer * KvHeads + head) * 2 * HeadDim;

    public float* KeyMax(int layer, int head, int page) => KeyMin(layer, head, page) + HeadDim;

    /// <summary>Makes room for positions below `length`.</summary>
    public void EnsureCapacity(int length)
    {
        if (length > Capacity)
            throw new InvalidOperationException($"The sequence needs {length} positions but the cache holds at most {Capacity}.");
        int needed = (length + PageSize - 1) / PageSize;
        while (_pageCount < needed)
        {
            if (_pageCount == _pages.Length) Array.Resize(ref _pages, _pages.Length * 2);
            var p = (byte*)NativeMemory.AlignedAlloc((nuint)_pageBytes, 64);
            // Summaries start empty: min = +inf, max = -inf, so the first key sets them.
            for (int lh = 0; lh < Layers * KvHeads; lh++)
            {
                var mn = (float*)(p + _summaryOffset) + (long)lh * 2 * HeadDim;
                new Span<float>(mn, HeadDim).Fill(float.PositiveInfinity);
                new Span<float>(mn + HeadDim, HeadDim).Fill(float.NegativeInfinity);
            }
            _pages[_pageCount++] = (nint)p;
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
            Kernels.Convert.FromSingle(k, Type, Key(layer, h, pos));
            Kernels.Convert.FromSingle(values.Slice(h * HeadDim, HeadDim), Type, Value(layer, h, pos));
            // The summary bounds the key as stored (after rounding), so Quest's bound holds for what attention reads.
            float* mn = KeyMin(layer, h, pos / PageSize), mx = mn + HeadDim;
            Kernels.Convert.ToSingle(Type, Key(layer, h, pos), stored);
            for (int i = 0; i < HeadDim; i++)
            {
                if (stored[i] < mn[i]) mn[i] = stored[i];
                if (stored[i] > mx[i]) mx[i] = stored[i];
            }
        }
    }

    /// <summary>An independent copy (same pages' contents), e.g. to decode several methods from one prefill.</summary>
    /// <summary>A copy holding up to `capacity` positions (default: this cache's), at least Length.</summary>
    public KvCache Clone(int? capacity = null)
    {
        int cap = capacity ?? Capacity;
        if (cap < Length) throw new ArgumentOutOfRangeException(nameof(capacity), $"A copy of a cache of {Length} positions cannot hold only {cap}.");
        var c = new KvCache(Layers, KvHeads, HeadDim, Type, cap, PageSize);
        // the last page may reach past a capacity that is not a whole number of pages
        c.EnsureCapacity(Math.Min(_pageCount * PageSize, cap));
        for (int i = 0; i < c._pageCount; i++)
            Buffer.MemoryCopy((void*)_pages[i], (void*)c._pages[i], _pageBytes, _pageBytes);
        c.Length = Length;
        return c;
    }

    /// <summary>Forgets positions from `length` on (their pages are kept for reuse; summaries are rebuilt).</summary>
    public void Truncate(int length)
    {
        if (length > Length) throw new ArgumentOutOfRangeException(nameof(length));
        Length = length;
        int firstPartial = length / PageSize;
        Span<float> k = stackalloc float[HeadDim];
        for (int page = firstPartial; page < _pageCount; page++)
            for (int l = 0; l < Layers; l++)
                for (int h = 0; h < KvHeads; h++)
                {
                    float* mn = KeyMin(l, h, page), mx = mn + HeadDim;
                    new Span<float>(mn, HeadDim).Fill(float.PositiveInfinity);
                    new Span<float>(mx, HeadDim).Fill(float.NegativeInfinity);
                    for (int pos = page * PageSize; pos < Math.Min(length, (page + 1) * PageSize); pos++)
                    {
                        Kernels.Convert.ToSingle(Type, Key(l, h, pos), k);
                        for (int i = 0; i < HeadDim; i++) { mn[i] = Math.Min(mn[i], k[i]); mx[i] = Math.Max(mx[i], k[i]); }
                    }
                }
    }

    public long AllocatedBytes => _pageCount * _pageBytes;

    public void Dispose()
    {
        for (int i = 0; i < _pageCount; i++) NativeMemory.AlignedFree((void*)_pages[i]);
        _pageCount = 0;
        Length = 0;
    }
}
