using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Model;

/// <summary>The bf16 KV cache of a model on the device, for `slots` sequences: per layer K and V
/// [slot][kvHead][capacity][headDim] (the layout the decode kernels read) and Quest's per-page min/max summaries
/// [slot][kvHead][pages][headDim]. Which slot each row of a step reads and writes, and the rows' tokens, positions and
/// lengths, live in small device arrays that the host rewrites before a step, so a captured step graph replays for
/// every position.
/// <para>Memory is either allocated whole (every slot's full capacity, as long as the cache lives) or, on demand, made
/// of pages of the driver's mapping granularity from one pool (<see cref="DevicePagePool"/>): each slot's addresses are
/// reserved up front, and a sequence maps only the pages its own capacity covers (<see cref="TryHold"/>), in every
/// head's run of positions, and Quest's summaries only when its plan reads them; the pages go back to the pool when it
/// ends (<see cref="Release"/>). Addresses never move, so the kernels and the captured graphs are the same in both
/// forms; each head's run is padded to whole pages (<see cref="HeadStride"/>).</para></summary>
internal sealed class GpuKvCache : IDisposable
{
    private const int Kinds = 4; // K, V, page min, page max

    public ModelConfig Config { get; }
    public int Slots { get; }
    public int Capacity { get; }
    public int PageSize { get; }
    public int MaxRows { get; }
    public int PageCapacity => (Capacity + PageSize - 1) / PageSize;
    /// <summary>Elements from one KV head's keys to the next within a slot: the capacity, padded to whole mapping
    /// pages when memory is on demand.</summary>
    public long HeadStride { get; }
    public long PageHeadStride => (long)PageCapacity * Config.HeadDim;
    /// <summary>Bytes from one slot's keys (values) of a layer to the next slot's.</summary>
    public long SlotBytes => Config.NumKvHeads * HeadStride * 2;
    /// <summary>Bytes from one slot's page summaries of a layer to the next slot's (padded to whole pages on demand).</summary>
    public long PageSlotBytes { get; }

    /// <summary>Whether memory is mapped per sequence from a page pool (otherwise every slot is allocated whole).</summary>
    public bool OnDemand => _pool != null;

    // where a slot's memory lies (page-padded when on demand)
    private readonly KvPageLayout _layout;
    private readonly DeviceBuffer[] _k = [], _v = [], _min = [], _max = [];
    private readonly DevicePagePool? _pool;
    private readonly DeviceAddressRange[] _ranges = [];
    // on demand: each slot's mapped pages as (range, byte offset within the slot's part of it, page)
    private readonly List<(int Range, long Offset, int Page)>[]? _held;
    private readonly bool[] _summaries;
    private readonly DeviceBuffer _bases = null!;
    private readonly DeviceBuffer _rowState = null!;
    private readonly int[] _rowSlots;
    private readonly int[] _hostState;
    private readonly ulong[] _hostBases;

    /// <summary>A cache whose slots are allocated whole.</summary>
    public GpuKvCache(CudaDevice device, ModelConfig config, int slots, int capacity, int maxRows = ModelKernels.MaxRows, int pageSize = 16)
        : this(device, config, slots, capacity, maxRows, pageSize, poolPages: 0, pageBytes: 0) { }

    /// <summary>poolPages &gt; 0: memory on demand from a pool of that many pages of `pageBytes` (the driver's
    /// granularity, <see cref="DevicePagePool.Granularity"/>); 0: every slot allocated whole.</summary>
    public GpuKvCache(CudaDevice device, ModelConfig config, int slots, int capacity, int maxRows, int pageSize, int poolPages, long pageBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Config = config;
        Slots = slots;
        Capacity = capacity;
        PageSize = pageSize;
        MaxRows = Math.Max(maxRows, ModelKernels.MaxRows);
        _layout = new KvPageLayout(config, capacity, pageSize, poolPages > 0 ? pageBytes : 0);
        HeadStride = _layout.HeadStride;
        PageSlotBytes = _layout.SummarySlotBytes;
        int layers = config.NumLayers;
        _summaries = new bool[slots];
        try
        {
            if (poolPages > 0)
            {
                _pool = new DevicePagePool(device, poolPages, pageBytes);
                _ranges = new DeviceAddressRange[layers * Kinds];
                for (int l = 0; l < layers; l++)
                    for (int kind = 0; kind < Kinds; kind++)
                        _ranges[l * Kinds + kind] = new DeviceAddressRange(device, (kind < 2 ? SlotBytes : PageSlotBytes) * slots, pageBytes);
                _held = new List<(int, long, int)>[slots];
                for (int i = 0; i < slots; i++) _held[i] = [];
            }
            else
            {
                (_k, _v, _min, _max) = (new DeviceBuffer[layers], new DeviceBuffer[layers], new DeviceBuffer[layers], new DeviceBuffer[layers]);
                for (int l = 0; l < layers; l++)
                {
                    _k[l] = device.Allocate(SlotBytes * slots);
                    _v[l] = device.Allocate(SlotBytes * slots);
                    _min[l] = device.Allocate(PageSlotBytes * slots);
                    _max[l] = device.Allocate(PageSlotBytes * slots);
                }
                Array.Fill(_summaries, true);
            }
            _bases = device.Allocate((long)layers * Kinds * MaxRows * 8);
            _rowState = device.Allocate(4L * MaxRows * 4);
        }
        catch
        {
            Dispose();
            throw;
        }
        _rowSlots = Enumerable.Repeat(-1, MaxRows).ToArray();
        _hostState = new int[4 * MaxRows];
        _hostBases = new ulong[layers * Kinds * MaxRows];
    }

    /// <summary>Start of layer `layer`'s memory of kind 0 (K), 1 (V), 2 (page min) or 3 (page max).</summary>
    private ulong Start(int layer, int kind) => _pool != null ? _ranges[layer * Kinds + kind].Pointer
        : (kind switch { 0 => _k, 1 => _v, 2 => _min, _ => _max })[layer].Pointer;

    private ulong At(int layer, int kind, int slot) => Start(layer, kind) + (ulong)(slot * (kind < 2 ? SlotBytes : PageSlotBytes));

    /// <summary>Pages of the pool (0 when slots are allocated whole), and how many are free.</summary>
    public int PoolPages => _pool?.Ledger.Pages ?? 0;
    public int FreePages => _pool?.Ledger.Free ?? 0;
    public long PoolPageBytes => _pool?.PageBytes ?? 0;

    /// <summary>Pages a sequence of `positions` positions takes from the pool (with Quest's page summaries when
    /// `summaries`), when the pages wholly below `shared` positions are another slot's (<see cref="TryHold"/>).</summary>
    public int PagesFor(int positions, bool summaries, int shared = 0) =>
        _layout.PagesFor(positions, summaries) - Config.NumLayers * 2 * Config.NumKvHeads * _layout.SharedPagesPerHead(shared, positions);

    /// <summary>Whether slot `slot` has memory for Quest's page summaries (always, when allocated whole); the prefill
    /// and the decode step keep them only there.</summary>
    public bool KeepsSummaries(int slot) => _summaries[CheckSlot(slot)];

    /// <summary>Gives slot `slot` the memory for positions 0 .. positions − 1 (and page summaries when `summaries`):
    /// on demand maps that many pages from the pool, all or none; false, with nothing mapped, when the pool has too few
    /// free. With `shareFrom`, the keys' and values' pages wholly below position `shared` are slot shareFrom's own,
    /// mapped here too (neither slot may write below `shared` while both hold them: a prompt cache and its copies
    /// write only after it). With `alias`, every page slot `alias` holds is shared (both then read and write the same
    /// memory: for work whose results are thrown away, as warming up). Allocated whole: always true.</summary>
    public bool TryHold(int slot, int positions, bool summaries, int alias = -1, int shareFrom = -1, int shared = 0)
    {
        CheckSlot(slot);
        if ((uint)positions > (uint)Capacity) throw new ArgumentOutOfRangeException(nameof(positions), $"{positions} positions in a cache of {Capacity}.");
        if (_pool is null || _held is null) return true;
        if (_held[slot].Count > 0) throw new InvalidOperationException($"Slot {slot} already holds memory.");
        var held = _held[slot];
        if (alias >= 0)
        {
            foreach (var (range, offset, page) in _held[CheckSlot(alias)])
            {
                _pool.Ledger.Share(page);
                held.Add((range, offset, page));
            }
            _summaries[slot] = _summaries[alias];
        }
        else
        {
            int perHead = _layout.KvPagesPerHead(positions), sharedPerHead = shareFrom >= 0 ? _layout.SharedPagesPerHead(shared, positions) : 0;
            // the source's pages by where they lie in its slot
            var theirs = new Dictionary<(int, long), int>();
            if (sharedPerHead > 0)
                foreach (var (range, offset, page) in _held[CheckSlot(shareFrom)]) theirs[(range, offset)] = page;
            for (int l = 0; l < Config.NumLayers; l++)
                for (int kind = 0; kind < 2; kind++)
                    for (int h = 0; h < Config.NumKvHeads; h++)
                        for (int i = 0; i < sharedPerHead; i++)
                            if (!theirs.ContainsKey((l * Kinds + kind, h * HeadStride * 2 + i * _pool.PageBytes)))
                                throw new InvalidOperationException($"Slot {shareFrom} holds no page at layer {l}, head {h}, page {i} to share.");
            var pages = new int[PagesFor(positions, summaries, shareFrom >= 0 ? shared : 0)];
            if (!_pool.Ledger.TryTake(pages)) return false;
            int next = 0;
            for (int l = 0; l < Config.NumLayers; l++)
            {
                for (int kind = 0; kind < 2; kind++)
                    for (int h = 0; h < Config.NumKvHeads; h++)
                        for (int i = 0; i < perHead; i++)
                        {
                            long offset = h * HeadStride * 2 + i * _pool.PageBytes;
                            int page;
                            if (i < sharedPerHead)
                            {
                                page = theirs[(l * Kinds + kind, offset)];
                                _pool.Ledger.Share(page);
                            }
                            else page = pages[next++];
                            held.Add((l * Kinds + kind, offset, page));
                        }
                if (summaries)
                    for (int kind = 2; kind < Kinds; kind++)
                        for (int i = 0; i < _layout.SummaryPages; i++)
                            held.Add((l * Kinds + kind, i * _pool.PageBytes, pages[next++]));
            }
            _summaries[slot] = summaries;
        }
        int mapped = 0;
        try
        {
            for (; mapped < held.Count; mapped++)
            {
                var (range, offset, page) = held[mapped];
                _pool.Map(Address(range, slot, offset), page);
            }
        }
        catch
        {
            for (int i = 0; i < mapped; i++) _pool.Unmap(Address(held[i].Range, slot, held[i].Offset));
            foreach (var e in held) _pool.Ledger.Put(e.Page);
            held.Clear();
            _summaries[slot] = false;
            throw;
        }
        return true;
    }

    /// <summary>Positions that <see cref="TryHold"/> with `shared` positions of another slot maps from its pages, for a
    /// sequence of `positions` positions: whole pages only (0 when allocated whole).</summary>
    public int SharedPositionsFor(int shared, int positions) =>
        _pool is null ? 0 : _layout.SharedPagesPerHead(shared, positions) * (int)(_pool.PageBytes / (Config.HeadDim * 2L));

    private ulong Address(int range, int slot, long offset) => _ranges[range].At(slot * (range % Kinds < 2 ? SlotBytes : PageSlotBytes) + offset);

    /// <summary>Unmaps slot `slot`'s pages and gives back those no other slot shares; nothing when allocated whole. No
    /// work that touches the slot may still be queued.</summary>
    public void Release(int slot)
    {
        CheckSlot(slot);
        if (_pool is null || _held is null) return;
        // every page goes back even when an unmapping fails, so that the slot is never released twice
        Exception? failed = null;
        foreach (var (range, offset, page) in _held[slot])
        {
            try
            {
                _pool.Unmap(Address(range, slot, offset));
            }
            catch (CudaException e)
            {
                failed ??= e;
            }
            _pool.Ledger.Put(page);
        }
        _held[slot].Clear();
        _summaries[slot] = false;
        if (failed != null) throw failed;
    }

    /// <summary>Device bytes slot `slot` holds now (its full share when allocated whole).</summary>
    public long HeldBytes(int slot) => _held is null ? 2 * Config.NumLayers * (SlotBytes + PageSlotBytes) : _held[CheckSlot(slot)].Count * PoolPageBytes;

    /// <summary>Device address of the rows' token ids (int[MaxRows]).</summary>
    public ulong Tokens => _rowState.Pointer;
    /// <summary>Device address of the rows' positions (int[MaxRows]).</summary>
    public ulong Positions => _rowState.At(MaxRows * 4L);
    /// <summary>Device address of the rows' lengths, position + 1 (int[MaxRows]).</summary>
    public ulong Lengths => _rowState.At(2 * MaxRows * 4L);
    /// <summary>Device address of the rows' slots (int[MaxRows]): where a plan keeps each sequence's state.</summary>
    public ulong RowSlots => _rowState.At(3 * MaxRows * 4L);

    /// <summary>Row r of the next step on `stream` is token tokens[r] at position positions[r] of slot slots[r].
    /// One copy of 4 × MaxRows ints in stream order, plus the base-address table when the slot of some row changed.</summary>
    public void SetRows(ReadOnlySpan<int> slots, ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, CudaStream stream)
    {
        int rows = slots.Length;
        if (rows < 1 || rows > MaxRows || tokens.Length != rows || positions.Length != rows)
            throw new ArgumentException($"A step takes 1 to {MaxRows} rows with one slot, token and position each.");
        bool remap = false;
        for (int r = 0; r < rows; r++)
        {
            if ((uint)slots[r] >= (uint)Slots) throw new ArgumentOutOfRangeException(nameof(slots), $"Slot {slots[r]} of a cache of {Slots}.");
            if ((uint)positions[r] >= (uint)Capacity)
                throw new ArgumentOutOfRangeException(nameof(positions), $"Position {positions[r]} is past the cache's capacity of {Capacity}.");
            remap |= _rowSlots[r] != slots[r];
            _hostState[r] = tokens[r];
            _hostState[MaxRows + r] = positions[r];
            _hostState[2 * MaxRows + r] = positions[r] + 1;
            _hostState[3 * MaxRows + r] = slots[r];
        }
        _rowState.UploadAsync<int>(_hostState, stream);
        if (!remap) return;
        for (int r = 0; r < rows; r++) _rowSlots[r] = slots[r];
        for (int l = 0; l < Config.NumLayers; l++)
            for (int r = 0; r < rows; r++)
            {
                int at = l * Kinds * MaxRows + r;
                for (int kind = 0; kind < Kinds; kind++) _hostBases[at + kind * MaxRows] = At(l, kind, slots[r]);
            }
        _bases.UploadAsync<ulong>(_hostBases, stream);
    }

    /// <summary>Device address of slot `slot`'s keys of layer `layer`: [kvHead][capacity][headDim] bf16.</summary>
    public ulong KeyBase(int layer, int slot) => At(layer, 0, CheckSlot(slot));
    public ulong ValueBase(int layer, int slot) => At(layer, 1, CheckSlot(slot));
    /// <summary>Slot `slot`'s per-page key minima (maxima) of layer `layer`: [kvHead][pages][headDim] bf16.</summary>
    public ulong PageMinBase(int layer, int slot) => At(layer, 2, CheckSlot(slot));
    public ulong PageMaxBase(int layer, int slot) => At(layer, 3, CheckSlot(slot));

    private int CheckSlot(int slot) =>
        (uint)slot < (uint)Slots ? slot : throw new ArgumentOutOfRangeException(nameof(slot), $"Slot {slot} of a cache of {Slots}.");

    /// <summary>Layer `layer` as the kernels see it for a step of `rows` rows, launches covering `planLength` keys.</summary>
    public KvView View(int layer, int rows, int planLength) => View(layer, 0, rows, planLength);

    /// <summary>Layer `layer` as the kernels see rows first .. first + rows − 1 of a step (its row 0 is row `first`).</summary>
    public KvView View(int layer, int first, int rows, int planLength)
    {
        if (first < 0 || rows < 1 || first + rows > MaxRows) throw new ArgumentOutOfRangeException(nameof(rows), $"Rows {first} to {first + rows - 1} of a step of at most {MaxRows}.");
        long at = (long)layer * Kinds * MaxRows * 8 + first * 8L;
        return new KvView(_bases.At(at), _bases.At(at + MaxRows * 8L), _bases.At(at + 2 * MaxRows * 8L),
            _bases.At(at + 3 * MaxRows * 8L), Lengths + (ulong)first * 4, HeadStride, PageHeadStride, PageSize, rows,
            Config.NumKvHeads, Config.NumHeads, Math.Min(planLength, Capacity));
    }

    /// <summary>Layer `layer`'s keys, bf16 [slot][kvHead][capacity][headDim]: for writing or reading a cache's
    /// contents directly (copying one in, filling one for timing); page summaries are not updated by such writes.
    /// Only a cache allocated whole has them as one buffer.</summary>
    public DeviceBuffer Keys(int layer) => OnDemand ? throw new InvalidOperationException("A cache on demand has no buffer of every slot's keys.") : _k[layer];

    /// <summary>Layer `layer`'s values, bf16 [slot][kvHead][capacity][headDim] (see <see cref="Keys"/>).</summary>
    public DeviceBuffer Values(int layer) => OnDemand ? throw new InvalidOperationException("A cache on demand has no buffer of every slot's values.") : _v[layer];

    /// <summary>Copies slot `from`'s keys and values of positions first .. positions − 1 into slot `to`, and the page
    /// summaries of positions 0 .. positions − 1 where both slots keep them, in stream order.</summary>
    public void CopySlot(int from, int to, int positions, CudaStream s, int first = 0)
    {
        if ((uint)from >= (uint)Slots || (uint)to >= (uint)Slots) throw new ArgumentOutOfRangeException(nameof(to), $"Slots {from} → {to} of a cache of {Slots}.");
        if ((uint)positions > (uint)Capacity || (uint)first > (uint)positions)
            throw new ArgumentOutOfRangeException(nameof(positions), $"Positions {first} to {positions} in a cache of {Capacity}.");
        if (from == to || positions == 0) return;
        long start = (long)first * Config.HeadDim * 2, run = (long)(positions - first) * Config.HeadDim * 2;
        long pageRun = (long)((positions + PageSize - 1) / PageSize) * Config.HeadDim * 2;
        bool summaries = _summaries[from] && _summaries[to];
        for (int l = 0; l < Config.NumLayers; l++)
            for (int h = 0; h < Config.NumKvHeads; h++)
            {
                long head = h * HeadStride * 2 + start, pageHead = h * PageHeadStride * 2;
                if (run > 0)
                {
                    s.CopyAsync(At(l, 0, to) + (ulong)head, At(l, 0, from) + (ulong)head, run);
                    s.CopyAsync(At(l, 1, to) + (ulong)head, At(l, 1, from) + (ulong)head, run);
                }
                if (!summaries) continue;
                s.CopyAsync(At(l, 2, to) + (ulong)pageHead, At(l, 2, from) + (ulong)pageHead, pageRun);
                s.CopyAsync(At(l, 3, to) + (ulong)pageHead, At(l, 3, from) + (ulong)pageHead, pageRun);
            }
    }

    /// <summary>Queues Quest's summaries of the pages that positions first .. last of slot `slot` touch in layer
    /// `layer`, each over its keys from the page's start (<see cref="ModelKernels.PageSummariesSpan"/>).</summary>
    public void SummarisePages(ModelKernels kernels, int layer, int slot, int first, int last, CudaStream s) =>
        kernels.PageSummariesSpan(KeyBase(layer, slot), PageMinBase(layer, slot), PageMaxBase(layer, slot), HeadStride, PageHeadStride, PageSize,
            Config.HeadDim, Config.NumKvHeads, first, last, s);

    /// <summary>Bytes of keys and values the cache can hold: the pool's pages on demand, every slot otherwise.</summary>
    public long KvBytes => _pool != null ? (long)_pool.Ledger.Pages * _pool.PageBytes : Config.NumLayers * 2 * SlotBytes * Slots;

    /// <summary>Device bytes a cache of `slots` sequences of `capacity` positions takes when allocated whole: keys,
    /// values and Quest's page summaries of every layer.</summary>
    public static long BytesFor(ModelConfig config, int slots, int capacity, int pageSize = 16)
    {
        long perSlot = (long)config.NumKvHeads * config.HeadDim * 2 * (2L * capacity + 2L * ((capacity + pageSize - 1) / pageSize));
        return perSlot * config.NumLayers * slots;
    }

    public void Dispose()
    {
        if (_held != null)
            for (int slot = 0; slot < _held.Length; slot++)
                if (_held[slot].Count > 0) Release(slot);
        foreach (var set in new[] { _k, _v, _min, _max })
            foreach (var b in set) b?.Dispose();
        foreach (var r in _ranges) r?.Dispose();
        _pool?.Dispose();
        _bases?.Dispose();
        _rowState?.Dispose();
    }
}

/// <summary>Where a slot's memory lies when it is mapped in pages of `pageBytes` (0: allocated whole, no padding):
/// each KV head's run of `capacity` positions padded to whole pages, and a slot's page summaries of a layer (all heads)
/// padded to whole pages.</summary>
internal readonly record struct KvPageLayout(ModelConfig Config, int Capacity, int PageSize, long PageBytes)
{
    private long RowBytes => Config.HeadDim * 2L;
    private long RawSummaryBytes => (long)Config.NumKvHeads * ((Capacity + PageSize - 1) / PageSize) * RowBytes;

    /// <summary>Elements from one KV head's run to the next: the capacity's, padded to whole pages when paged.</summary>
    public long HeadStride => (PageBytes > 0 ? RoundUp(Capacity * RowBytes, PageBytes) / RowBytes : Capacity) * Config.HeadDim;
    public long SummarySlotBytes => PageBytes > 0 ? RoundUp(RawSummaryBytes, PageBytes) : RawSummaryBytes;
    /// <summary>Pages behind one slot's page summaries of one layer, for one of min and max.</summary>
    public int SummaryPages => PageBytes > 0 ? (int)(SummarySlotBytes / PageBytes) : 0;

    /// <summary>Pages of one head's run wholly below position `shared`, at most those `positions` positions take.</summary>
    public int SharedPagesPerHead(int shared, int positions) =>
        PageBytes > 0 ? (int)Math.Min(Math.Max(0, shared) * RowBytes / PageBytes, KvPagesPerHead(positions)) : 0;

    /// <summary>Pages behind one KV head's first `positions` keys (or values) of one layer.</summary>
    public int KvPagesPerHead(int positions) => PageBytes > 0 ? (int)(RoundUp(Math.Max(1, positions) * RowBytes, PageBytes) / PageBytes) : 0;

    /// <summary>Whether a cache maps its memory on demand where its maker does not say: where the driver can (paged),
    /// and either a head's run of the capacity spans two or more pages (a shorter sequence then maps less) or the
    /// slots allocated whole (`wholeBytes`) would not fit in `room` (the pool then holds what fits and the rest of the
    /// sequences wait for room).</summary>
    public bool OnDemandByDefault(long wholeBytes, long room) => PageBytes > 0 && (KvPagesPerHead(Capacity) >= 2 || wholeBytes > room);

    /// <summary>Pages a sequence of `positions` positions maps: keys and values of every layer and KV head, and the
    /// page summaries when `summaries`.</summary>
    public int PagesFor(int positions, bool summaries) =>
        Config.NumLayers * (2 * Config.NumKvHeads * KvPagesPerHead(positions) + (summaries ? 2 * SummaryPages : 0));

    private static long RoundUp(long n, long unit) => (n + unit - 1) / unit * unit;
}
