using SparseDecode.Selection;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;

namespace SparseDecode.Cuda.Selection;

/// <summary>A selection plan's buffers in device memory for every row of a decode batch (row r of a step is row r of
/// every buffer) and its operations as kernel launches on the step's stream: nothing is read back, so the plan is
/// captured into the step graph with the rest of the step. Lists are [rows·heads·depth][capacity] padded with −1,
/// with (count, stamp) pairs in a meta array; scores [rows·heads][stride]; flags [rows·heads].</summary>
internal sealed class GpuPlanOps : ISelectionOps, IDisposable
{
    private sealed class Buffer(PlanBuffer spec, DeviceBuffer data, DeviceBuffer? meta, int stride, int heads)
    {
        public readonly PlanBuffer Spec = spec;
        public readonly DeviceBuffer Data = data;
        public readonly DeviceBuffer? Meta = meta;
        /// <summary>Entries per list (indices) or per score row (a multiple of 4 floats).</summary>
        public readonly int Stride = stride;
        /// <summary>Bytes of one row's data (all its heads) and of its meta.</summary>
        public readonly long RowBytes = (long)heads * spec.Depth * stride * 4, MetaRowBytes = meta is null ? 0 : (long)heads * spec.Depth * 8;
    }

    private readonly SelectionPlan _plan;
    private readonly SelectionKernels _k;
    private readonly DecodeKernels _dk;
    private readonly Buffer[][] _buffers;
    private readonly List<DeviceBuffer> _owned = [];
    private readonly DeviceBuffer _steps, _rowLens, _ks, _bitmap, _best, _dilated, _dilatedCount;
    private readonly SelectionKernels.Lists _rest;
    private readonly int _bestCap, _dilatedCap;
    private readonly DecodeKernels.TopKWorkspace _topk;
    private readonly int _words;
    private readonly float _scale;
    private SelectionKernels.Heads _heads;
    /// <summary>Heads of 128 channels in groups of 4 or 8: every key's score through the tuned decode kernels
    /// (half a warp per key, 16-byte loads), which read the cache at its bandwidth where the any-shape kernel does not.</summary>
    private readonly bool _tunedScores;
    private KvView _kv;
    private DeviceBuffer _q = null!;
    private CudaStream _s = null!;

    public GpuPlanOps(SelectionPlan plan, SelectionKernels kernels, DecodeKernels decodeKernels, SparseDecode.Model.ModelConfig config, int rows)
    {
        _plan = plan;
        _k = kernels;
        _dk = decodeKernels;
        Rows = RowCapacity = rows;
        int group = config.GroupSize, qPer = plan.Granularity == SelectionGranularity.QueryHead ? 1 : group;
        if (qPer > SelectionKernels.MaxQueriesPerHead)
            throw new ArgumentException($"Selection per KV head on the GPU takes groups of at most {SelectionKernels.MaxQueriesPerHead} query heads, not {qPer}.");
        _heads = new SelectionKernels.Heads(plan.Heads, qPer, group, config.NumHeads, config.HeadDim, rows);
        _tunedScores = GpuModel.IsTunedShape(config);
        _scale = 1f / MathF.Sqrt(config.HeadDim);
        var dev = kernels.Device;
        DeviceBuffer Own(long bytes) { var b = dev.Allocate(Math.Max(16, bytes)); _owned.Add(b); return b; }
        long rh = (long)rows * plan.Heads;
        var specs = plan.Layout.Buffers;
        _buffers = new Buffer[specs.Count][];
        for (int i = 0; i < specs.Count; i++)
        {
            var spec = specs[i];
            _buffers[i] = new Buffer[spec.PerLayer ? plan.Layers : 1];
            for (int l = 0; l < _buffers[i].Length; l++)
                _buffers[i][l] = spec.Kind switch
                {
                    PlanBufferKind.Indices => new Buffer(spec, Own(rh * spec.Depth * spec.Capacity * 4), Own(rh * spec.Depth * 8), spec.Capacity, plan.Heads),
                    PlanBufferKind.Scores => new Buffer(spec, Own(rh * LaunchPlan.ScoreStride(spec.Capacity) * 4), null, LaunchPlan.ScoreStride(spec.Capacity), plan.Heads),
                    _ => new Buffer(spec, Own(rh * 4), null, 1, plan.Heads),
                };
        }
        _steps = Own(rows * 4L);
        _rowLens = Own(rh * 4);
        _ks = Own(rh * 4);
        _words = (plan.MaxContext + 31) / 32;
        bool prhs = plan is PrhsPlan or HSharePlan;
        // the candidate kernels build their bitmaps in shared memory up to 320K positions
        bool bitmapInMemory = (plan is LfpsPlan || prhs) && SelectionKernels.SharedBitmapBytes(_words) == 0;
        _bitmap = Own(bitmapInMemory ? rh * _words * 4 : 16);
        _topk = new DecodeKernels.TopKWorkspace(dev, (int)rh, plan.MaxContext);
        // PrHS's pick: the `top` best domain offsets, their dilation, and the top-k that fills the room
        var (top, radius) = plan is PrhsPlan p ? (Math.Max(0, p.Settings.Top), p.Settings.Radius) : (0, 0);
        _bestCap = Math.Max(1, top);
        _dilatedCap = Math.Max(1, top * (2 * radius + 1));
        int restCap = prhs ? Math.Max(1, plan.Budget.Resolve(plan.MaxContext)) : 1;
        _best = Own(prhs ? rh * _bestCap * 4 : 16);
        _dilated = Own(prhs ? rh * _dilatedCap * 4 : 16);
        _dilatedCount = Own(rh * 4);
        _rest = new SelectionKernels.Lists(Own(prhs ? rh * restCap * 4 : 16), Own(rh * 8), restCap, 1);
    }

    /// <summary>Rows the operations act on: the rows of the step being queued (at most <see cref="RowCapacity"/>).</summary>
    public int Rows { get; private set; }
    /// <summary>Rows the buffers hold.</summary>
    public int RowCapacity { get; }
    public int Layer { get; private set; }

    /// <summary>The operations queued from now on act on rows 0 .. rows − 1.</summary>
    public void UseRows(int rows)
    {
        if (rows < 1 || rows > RowCapacity) throw new ArgumentOutOfRangeException(nameof(rows), $"The {_plan.Name} plan's buffers hold {RowCapacity} rows, not {rows}.");
        Rows = rows;
        _heads = _heads with { Rows = rows };
    }

    /// <summary>The buffers that carry state from step to step (each layer's own buffers, and the step counters): the
    /// buffer, the bytes of one row of it (rows follow each other), and the 32-bit word a new sequence's row holds.</summary>
    public IEnumerable<(DeviceBuffer Buffer, long RowBytes, uint Fresh)> CarriedState()
    {
        yield return (_steps, 4, 0u);
        foreach (var copies in _buffers)
            foreach (var b in copies)
            {
                if (!b.Spec.PerLayer) continue;
                yield return (b.Data, b.RowBytes, b.Spec.Kind == PlanBufferKind.Indices ? 0xFFFFFFFFu : 0u);
                if (b.Meta is not null) yield return (b.Meta, b.MetaRowBytes, 0u);
            }
    }
    public SelectionPlan Plan => _plan;

    /// <summary>Every row starts a new sequence: empty lists, zero flags, scores and step counters.</summary>
    public void Reset(CudaStream s)
    {
        foreach (var copies in _buffers)
            foreach (var b in copies)
            {
                b.Data.Fill32(b.Spec.Kind == PlanBufferKind.Indices ? 0xFFFFFFFFu : 0u, b.Data.Bytes / 4, s);
                b.Meta?.Fill32(0, b.Meta.Bytes / 4, s);
            }
        _steps.Fill32(0, RowCapacity, s);
    }

    /// <summary>Counts a decode step begun on every row (queue at the start of each step).</summary>
    public void BeginStep(CudaStream s) => _k.BeginStep(_steps, Rows, s);

    /// <summary>Binds the operations to one layer of the step being queued; `positions` (device int[kv.Rows]) holds
    /// each row's newest position, whose page summary <see cref="PageBounds"/> brings up to date.</summary>
    public void Bind(int layer, in KvView kv, DeviceBuffer queries, ulong positions, CudaStream s)
    {
        Layer = layer;
        _kv = kv;
        _q = queries;
        _positions = positions;
        _s = s;
        UpdatedPageSummaries = false;
    }

    private ulong _positions;

    /// <summary>Whether the operations queued since <see cref="Bind"/> brought the newest page summaries up to date
    /// (Quest's bounds do it in their launch; a layer that did not still needs the page update).</summary>
    public bool UpdatedPageSummaries { get; private set; }

    private Buffer At(int id) => _buffers[id][_buffers[id].Length == 1 ? 0 : Layer];
    private Buffer At(int id, int layer) => _buffers[id][_buffers[id].Length == 1 ? 0 : layer];

    private (DeviceBuffer? Flags, int Kind) Mask(HeadMask m) =>
        m.When == HeadMask.Kind.All ? (null, 0) : (At(m.Flags.Id).Data, m.When == HeadMask.Kind.Set ? 1 : 2);

    private int RowsTimesHeads => Rows * _plan.Heads;
    private SelectionKernels.Lists ListsOf(IndexSet set) { var b = At(set.Id); return new(b.Data, b.Meta!, b.Stride, b.Spec.Depth); }

    /// <summary>The device list a layer attends to: [rows][heads][Capacity], −1 padded.</summary>
    public (DeviceBuffer Entries, int Capacity) AttendList(IndexSet set, int layer)
    {
        var b = At(set.Id, layer);
        return (b.Data, b.Stride);
    }

    /// <summary>Copies a row's list (valid entries, ascending) of one head back to the host (checks and reports).</summary>
    public int[] Download(IndexSet set, int layer, int row, int head, int list = 0)
    {
        var b = At(set.Id, layer);
        long i = ((long)row * _plan.Heads + head) * b.Spec.Depth + list;
        var all = b.Data.Download<int>(b.Stride, i * b.Stride * 4);
        return all.Where(p => p >= 0).Order().ToArray();
    }

    /// <summary>A flag over every head, row and layer, summed (a counter's total).</summary>
    public long Total(FlagSet set)
    {
        long t = 0;
        foreach (var b in _buffers[set.Id]) foreach (int f in b.Data.Download<int>(RowsTimesHeads)) t += f;
        return t;
    }

    /// <summary>Every head's list count (list 0) of every row the buffers hold at a layer, [rows·heads].</summary>
    public int[] Counts(IndexSet set, int layer)
    {
        var b = At(set.Id, layer);
        int n = RowCapacity * _plan.Heads;
        var meta = b.Meta!.Download<int>(2 * n * b.Spec.Depth);
        return Enumerable.Range(0, n).Select(i => meta[2 * i * b.Spec.Depth]).ToArray();
    }

    // lists TopPages writes: the last page's positions sit in a prefix of pageSize entries the count leaves out
    private readonly HashSet<int> _lastPagePrefixed = [];

    /// <summary>Positions each head of `row` attends from list 0 of `set` at a layer, for a sequence of `length`
    /// positions: the list's count, plus the current page's positions where the list keeps them in its prefix
    /// (Quest's pages).</summary>
    public int[] AttendedCounts(IndexSet set, int layer, int row, int length)
    {
        var counts = Counts(set, layer);
        int heads = _plan.Heads, ps = _kv.PageSize;
        int lastPage = _lastPagePrefixed.Contains(set.Id) ? (length - 1) % ps + 1 : 0;
        return Enumerable.Range(0, heads).Select(h => Math.Min(counts[row * heads + h] + lastPage, length)).ToArray();
    }

    /// <summary>Decode steps begun on row 0.</summary>
    public int Steps => _steps.Download<int>(1)[0];

    public void ScoreAll(ScoreSet dst, HeadMask only = default)
    {
        var (m, kind) = Mask(only);
        var d = At(dst.Id);
        if (_tunedScores)
            _dk.Score(_kv, _q, null, 0, IndexHeads.KvHead, OutHeads, d.Data, d.Stride, _s, mask: m, maskKind: kind);
        else _k.Scores(_kv, _q, _heads, _scale, null, null, 0, m, kind, d.Data, d.Stride, _s);
    }

    private IndexHeads OutHeads => _plan.Granularity == SelectionGranularity.KvHead ? IndexHeads.KvHead : IndexHeads.QueryHead;

    /// <remarks>The tuned shape scores lists through the tuned kernels too (16-byte loads, 8 keys in flight per
    /// half-warp): LFPS's candidate lists, about 30% of a 32K context per query head, are long enough for the
    /// any-shape kernel's two-byte loads to cost as much as the rest of the layer.</remarks>
    public void ScoreList(IndexSet list, ScoreSet dst)
    {
        var l = At(list.Id);
        var d = At(dst.Id);
        if (_tunedScores) _dk.Score(_kv, _q, l.Data, l.Stride, OutHeads, OutHeads, d.Data, d.Stride, _s, listMeta: l.Meta);
        else _k.Scores(_kv, _q, _heads, _scale, l.Data, l.Meta, l.Stride, null, 0, d.Data, d.Stride, _s);
    }

    public void ScoreRange(FlagSet start, FlagSet length, ScoreSet dst)
    {
        var d = At(dst.Id);
        if (_tunedScores) _dk.ScoreRange(_kv, _q, OutHeads, At(start.Id).Data, At(length.Id).Data, d.Data, d.Stride, _s);
        else _k.Scores(_kv, _q, _heads, _scale, null, null, 0, null, 0, d.Data, d.Stride, _s, At(start.Id).Data, At(length.Id).Data);
    }

    public void PageBounds(ScoreSet dst)
    {
        var d = At(dst.Id);
        UpdatedPageSummaries |= _k.PageBounds(_kv, _q, _heads, _scale, d.Data, d.Stride, _s, _positions);
    }

    /// <remarks>A masked top-k (LFPS's refresh, which most steps no head needs) takes the one-launch per-row
    /// algorithm: when no row is admitted it costs one empty launch instead of six. The per-row algorithm sizes its
    /// rows itself; the multi-block one reads sizes a launch before it writes.</remarks>
    public void TopK(ScoreSet scores, IndexSet? candidates, Budget budget, IndexSet dst, HeadMask only = default) =>
        TopK(scores, candidates, budget, dst, only, null);

    private void TopK(ScoreSet scores, IndexSet? candidates, Budget budget, IndexSet dst, HeadMask only, DecodeKernels.TopKTrigger? trigger)
    {
        var (m, kind) = Mask(only);
        var src = At(scores.Id);
        var d = At(dst.Id);
        var c = candidates is IndexSet cs ? At(cs.Id) : null;
        var mode = c is null ? SelectionKernels.SizeMode.AllPositions : SelectionKernels.SizeMode.Candidates;
        int longest = c is null ? _kv.PlanLength : c.Stride;
        var algorithm = only.When == HeadMask.Kind.All && trigger is null ? _dk.ChooseTopK(RowsTimesHeads, longest, c is not null) : TopKAlgorithm.PerRow;
        var request = new DecodeKernels.TopKRequest(src.Data, RowsTimesHeads, src.Stride, longest, d.Stride, d.Data, d.Stride)
        {
            Candidates = c?.Data, CandidateStride = c?.Stride ?? 0, Counts = d.Meta!.Pointer, PadTo = d.Stride, Algorithm = algorithm,
            Trigger = trigger,
        };
        if (algorithm == TopKAlgorithm.PerRow)
            request = request with { Sizes = new DecodeKernels.PlanTopKSizes(_kv.Lengths, _plan.Heads, (int)mode, budget, c?.Meta, m, kind) };
        else
        {
            _k.TopKSizes(_kv.Lengths, _plan.Heads, Rows, mode, budget, c?.Meta, m, kind, _rowLens, _ks, _s);
            request = request with { RowLengths = _rowLens, Ks = _ks.Pointer };
        }
        _dk.TopK(request, _topk, _s);
    }

    /// <remarks>One launch: the sizes, the last page and the top-k over the other pages (topk_pages).</remarks>
    public void TopPages(ScoreSet bounds, Budget budget, IndexSet dst)
    {
        _lastPagePrefixed.Add(dst.Id);
        var src = At(bounds.Id);
        var d = At(dst.Id);
        // The last page's positions take the first pageSize entries of each list; the chosen pages follow them.
        int ps = _kv.PageSize;
        _dk.TopPages(src.Data, src.Stride, _kv.Lengths, Rows, _plan.Heads, budget, ps, d.Data, d.Stride, d.Stride - ps, d.Meta!, _s);
    }

    public void Window(int sinks, Budget budget, IndexSet dst)
    {
        var d = At(dst.Id);
        _k.Window(_kv.Lengths, _plan.Heads, Rows, sinks, budget, d.Data, d.Meta!, d.Stride, _s);
    }

    public void LfpsCandidates(in LfpsState state, in LfpsRule rule, IndexSet dst) =>
        _k.LfpsCandidates(_kv.Lengths, _steps, _plan.Heads, Rows, ListsOf(state.History), At(state.LastRefresh.Id).Data,
            At(state.Refresh.Id).Data, rule, _bitmap, _words, ListsOf(dst), _s);

    /// <remarks>One launch: the per-row top-k of the candidates computes the trigger beside the selection.</remarks>
    public void LfpsSelect(ScoreSet candidateScores, IndexSet candidates, Budget budget, IndexSet dst, in LfpsState state, float drop)
    {
        var rm = At(state.ReferenceMax.Id);
        var trigger = drop > 0 ? new DecodeKernels.TopKTrigger(At(state.Refresh.Id).Data, rm.Data, rm.Stride, drop) : (DecodeKernels.TopKTrigger?)null;
        TopK(candidateScores, candidates, budget, dst, HeadMask.WhereNot(state.Refresh), trigger);
    }

    public void LfpsRemember(IndexSet selected, ScoreSet allScores, in LfpsState state)
    {
        var all = At(allScores.Id);
        var rm = At(state.ReferenceMax.Id);
        _k.LfpsRemember(_kv.Lengths, _steps, _plan.Heads, Rows, ListsOf(selected), all.Data, all.Stride, At(state.Refresh.Id).Data,
            rm.Data, rm.Stride, At(state.LastRefresh.Id).Data, At(state.Refreshes.Id).Data, At(state.Triggered.Id).Data,
            ListsOf(state.History), _s);
    }

    /// <summary>The previous layer's sets and stamps where the rule freezes from them (else none).</summary>
    private (DeviceBuffer? At, SelectionKernels.Lists? Sets) Previous(in PrhsState state, in PrhsRule rule)
    {
        if (!rule.FreezeFromPrevious || Layer == 0) return (null, null);
        var sets = At(state.Salient.Id, Layer - 1);
        return (At(state.RetrievedAt.Id, Layer - 1).Data, new SelectionKernels.Lists(sets.Data, sets.Meta!, sets.Stride, sets.Spec.Depth));
    }

    /// <remarks>Also writes the sizes of PrhsPick's first top-k into the shared size buffers (ScoreRange, between
    /// the two, does not touch them).</remarks>
    public void PrhsShare(in PrhsState state, in PrhsRule rule, Budget budget)
    {
        var reference = At(state.Reference.Id);
        var (prevAt, prev) = Previous(state, rule);
        _k.PrhsShare(_kv.Lengths, _steps, _heads, new(budget.Tokens, budget.Fraction, rule), _q, reference.Data, reference.Stride,
            At(state.RetrievedAt.Id).Data, prevAt, prev, At(state.Decision.Id).Data, At(state.DomainStart.Id).Data,
            At(state.DomainLength.Id).Data, At(state.FrozenFrom.Id).Data, At(state.FrozenCount.Id).Data, _rowLens, _ks, _s);
    }

    /// <remarks>Most steps most heads share their set, so both top-k take the one-launch per-row algorithm (a row
    /// with k &lt; 0 returns at once).</remarks>
    public void PrhsPick(ScoreSet domainScores, in PrhsState state, in PrhsRule rule, Budget budget, IndexSet dst)
    {
        var src = At(domainScores.Id);
        var z = new SelectionKernels.PrhsSizes(budget.Tokens, budget.Fraction, rule);
        int rows = RowsTimesHeads, top = Math.Min(rule.Top, _bestCap);
        if (top > 0 && rule.Radius > 0)
            _dk.TopK(new DecodeKernels.TopKRequest(src.Data, rows, src.Stride, _kv.PlanLength, top, _best, _bestCap)
            {
                RowLengths = _rowLens, Ks = _ks.Pointer, PadTo = _bestCap, Algorithm = TopKAlgorithm.PerRow,
            }, _topk, _s);
        var decision = At(state.Decision.Id).Data;
        _k.PrhsDilate(_kv.Lengths, _heads, z, decision, At(state.DomainLength.Id).Data, At(state.FrozenCount.Id).Data, _best, _bestCap,
            _dilated, _dilatedCap, _dilatedCount, _rowLens, _ks, _s);
        _dk.TopK(new DecodeKernels.TopKRequest(src.Data, rows, src.Stride, _kv.PlanLength, _rest.Capacity, _rest.Entries, _rest.Capacity)
        {
            RowLengths = _rowLens, Ks = _ks.Pointer, Counts = _rest.Meta.Pointer, PadTo = _rest.Capacity, Algorithm = TopKAlgorithm.PerRow,
        }, _topk, _s);
        var (_, prev) = Previous(state, rule);
        _k.PrhsCompose(_kv.Lengths, _heads, z, decision, At(state.DomainStart.Id).Data, At(state.FrozenFrom.Id).Data,
            At(state.FrozenCount.Id).Data, prev, _dilated, _dilatedCap, _dilatedCount, _rest, _ks, ListsOf(state.Salient), _bitmap, _words,
            ListsOf(dst), _s);
    }

    public void Dispose()
    {
        foreach (var b in _owned) b.Dispose();
        _topk.Dispose();
    }
}
