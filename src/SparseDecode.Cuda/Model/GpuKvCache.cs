using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Model;

/// <summary>The paged bf16 KV cache of a model on the device, for `slots` sequences: per layer K and V
/// [slot][kvHead][capacity][headDim] (the layout the decode kernels read) and Quest's per-page min/max summaries.
/// Which slot each row of a step reads and writes, and the rows' tokens, positions and lengths, live in small device
/// arrays that the host rewrites before a step, so a captured step graph replays for every position.</summary>
internal sealed class GpuKvCache : IDisposable
{
    private const int Kinds = 4; // K, V, page min, page max

    public ModelConfig Config { get; }
    public int Slots { get; }
    public int Capacity { get; }
    public int PageSize { get; }
    public int MaxRows { get; }
    public int PageCapacity => (Capacity + PageSize - 1) / PageSize;
    public long HeadStride => (long)Capacity * Config.HeadDim;
    public long PageHeadStride => (long)PageCapacity * Config.HeadDim;
    public long SlotBytes => Config.NumKvHeads * HeadStride * 2;
    public long PageSlotBytes => Config.NumKvHeads * PageHeadStride * 2;

    private readonly DeviceBuffer[] _k, _v, _min, _max;
    private readonly DeviceBuffer _bases;
    private readonly DeviceBuffer _rowState;
    private readonly int[] _rowSlots;
    private readonly int[] _hostState;
    private readonly ulong[] _hostBases;

    public GpuKvCache(CudaDevice device, ModelConfig config, int slots, int capacity, int maxRows = ModelKernels.MaxRows, int pageSize = 16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Config = config;
        Slots = slots;
        Capacity = capacity;
        PageSize = pageSize;
        MaxRows = Math.Max(maxRows, ModelKernels.MaxRows);
        int layers = config.NumLayers;
        _k = new DeviceBuffer[layers];
        _v = new DeviceBuffer[layers];
        _min = new DeviceBuffer[layers];
        _max = new DeviceBuffer[layers];
        try
        {
            for (int l = 0; l < layers; l++)
            {
                _k[l] = device.Allocate(SlotBytes * slots);
                _v[l] = device.Allocate(SlotBytes * slots);
                _min[l] = device.Allocate(PageSlotBytes * slots);
                _max[l] = device.Allocate(PageSlotBytes * slots);
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
                _hostBases[at] = _k[l].At(slots[r] * SlotBytes);
                _hostBases[at + MaxRows] = _v[l].At(slots[r] * SlotBytes);
                _hostBases[at + 2 * MaxRows] = _min[l].At(slots[r] * PageSlotBytes);
                _hostBases[at + 3 * MaxRows] = _max[l].At(slots[r] * PageSlotBytes);
            }
        _bases.UploadAsync<ulong>(_hostBases, stream);
    }

    /// <summary>Device address of slot `slot`'s keys of layer `layer`: [kvHead][capacity][headDim] bf16.</summary>
    public ulong KeyBase(int layer, int slot) => _k[layer].At(CheckSlot(slot) * SlotBytes);
    public ulong ValueBase(int layer, int slot) => _v[layer].At(CheckSlot(slot) * SlotBytes);
    /// <summary>Slot `slot`'s per-page key minima (maxima) of layer `layer`: [kvHead][pages][headDim] bf16.</summary>
    public ulong PageMinBase(int layer, int slot) => _min[layer].At(CheckSlot(slot) * PageSlotBytes);
    public ulong PageMaxBase(int layer, int slot) => _max[layer].At(CheckSlot(slot) * PageSlotBytes);

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
    /// contents directly (copying one in, filling one for timing); page summaries are not updated by such writes.</summary>
    public DeviceBuffer Keys(int layer) => _k[layer];

    /// <summary>Layer `layer`'s values, bf16 [slot][kvHead][capacity][headDim] (see <see cref="Keys"/>).</summary>
    public DeviceBuffer Values(int layer) => _v[layer];

    /// <summary>Copies slot `from`'s keys, values and page summaries into slot `to`, in stream order.</summary>
    public void CopySlot(int from, int to, CudaStream s)
    {
        if ((uint)from >= (uint)Slots || (uint)to >= (uint)Slots) throw new ArgumentOutOfRangeException(nameof(to), $"Slots {from} → {to} of a cache of {Slots}.");
        if (from == to) return;
        for (int l = 0; l < Config.NumLayers; l++)
        {
            s.CopyAsync(_k[l].At(to * SlotBytes), _k[l].At(from * SlotBytes), SlotBytes);
            s.CopyAsync(_v[l].At(to * SlotBytes), _v[l].At(from * SlotBytes), SlotBytes);
            s.CopyAsync(_min[l].At(to * PageSlotBytes), _min[l].At(from * PageSlotBytes), PageSlotBytes);
            s.CopyAsync(_max[l].At(to * PageSlotBytes), _max[l].At(from * PageSlotBytes), PageSlotBytes);
        }
    }

    /// <summary>Queues Quest's summaries of the pages that positions first .. last of slot `slot` touch in layer
    /// `layer`, each over its keys from the page's start (<see cref="ModelKernels.PageSummariesSpan"/>).</summary>
    public void SummarisePages(ModelKernels kernels, int layer, int slot, int first, int last, CudaStream s) =>
        kernels.PageSummariesSpan(KeyBase(layer, slot), PageMinBase(layer, slot), PageMaxBase(layer, slot), HeadStride, PageHeadStride, PageSize,
            Config.HeadDim, Config.NumKvHeads, first, last, s);

    public long KvBytes => Config.NumLayers * 2 * SlotBytes * Slots;

    /// <summary>Device bytes a cache of `slots` sequences of `capacity` positions takes: keys, values and Quest's
    /// page summaries of every layer.</summary>
    public static long BytesFor(ModelConfig config, int slots, int capacity, int pageSize = 16)
    {
        long perSlot = (long)config.NumKvHeads * config.HeadDim * 2 * (2L * capacity + 2L * ((capacity + pageSize - 1) / pageSize));
        return perSlot * config.NumLayers * slots;
    }

    public void Dispose()
    {
        foreach (var set in new[] { _k, _v, _min, _max })
            if (set != null)
                foreach (var b in set) b?.Dispose();
        _bases?.Dispose();
        _rowState?.Dispose();
    }
}
