using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The reference executor of a plan for one sequence: its plan buffers as arrays (grown with the context,
/// so a warm step allocates nothing) and every operation run at once, head by head, through an
/// <see cref="ISelectionBackend"/> bound to the current layer (scores, top-k and page bounds from it, so its index
/// cost is what the observer reports). <see cref="Select"/> runs one layer of the plan and hands the list it returns
/// to attention.</summary>
public sealed class SpanPlanOps : ISelectionOps
{
    private sealed class Buffer(PlanBuffer spec, int heads)
    {
        public readonly PlanBuffer Spec = spec;
        // indices: [head·depth + list][entry]; scores: [head][entry]
        public readonly int[][] Ints = spec.Kind == PlanBufferKind.Indices ? Empty<int>(heads * spec.Depth) : [];
        public readonly float[][] Floats = spec.Kind == PlanBufferKind.Scores ? Empty<float>(heads) : [];
        public readonly int[] Counts = new int[heads * spec.Depth];
        public readonly int[] Stamps = Filled(heads * spec.Depth, -1);
        public readonly int[] Flags = new int[heads];

        /// <summary>Copies this buffer's contents (lists up to their counts, stamps, flags, score rows) into `dst`,
        /// a buffer of the same spec, growing its rows where they are shorter.</summary>
        public void CopyTo(Buffer dst)
        {
            for (int i = 0; i < Ints.Length; i++) Ints[i].AsSpan(0, Counts[i]).CopyTo(Grow(ref dst.Ints[i], Counts[i]));
            for (int h = 0; h < Floats.Length; h++) Floats[h].CopyTo(Grow(ref dst.Floats[h], Floats[h].Length));
            Counts.CopyTo(dst.Counts, 0);
            Stamps.CopyTo(dst.Stamps, 0);
            Flags.CopyTo(dst.Flags, 0);
        }

        private static T[][] Empty<T>(int n)
        {
            var a = new T[n][];
            for (int i = 0; i < n; i++) a[i] = [];
            return a;
        }

        private static int[] Filled(int n, int v)
        {
            var a = new int[n];
            Array.Fill(a, v);
            return a;
        }
    }

    private readonly Buffer[][] _buffers; // [buffer id][layer or 0]
    // checkpoints of the state carried from step to step: per slot, copies of the per-layer buffers (null for the
    // others), the step count and position
    private readonly List<(Buffer[]?[] Buffers, int Steps, int Position)> _checkpoints = [];
    private ISelectionBackend _b = null!;
    private int[] _a = [], _c = [], _e = [], _top = [], _dilated = [], _rest = [];

    public SpanPlanOps(SelectionPlan plan)
    {
        Plan = plan;
        var specs = plan.Layout.Buffers;
        _buffers = new Buffer[specs.Count][];
        for (int i = 0; i < specs.Count; i++)
        {
            int copies = specs[i].PerLayer ? plan.Layers : 1;
            _buffers[i] = new Buffer[copies];
            for (int l = 0; l < copies; l++) _buffers[i][l] = new Buffer(specs[i], plan.Heads);
        }
    }

    /// <summary>Saves the state carried from step to step — the per-layer buffers, the step count and position — in
    /// checkpoint `slot`, for <see cref="Restore"/>. A slot's copies are allocated at its first save and reused.</summary>
    public void Save(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(slot);
        while (_checkpoints.Count <= slot)
        {
            var copies = new Buffer[]?[_buffers.Length];
            for (int i = 0; i < _buffers.Length; i++)
                if (_buffers[i][0].Spec.PerLayer)
                    copies[i] = _buffers[i].Select(b => new Buffer(b.Spec, Plan.Heads)).ToArray();
            _checkpoints.Add((copies, 0, -1));
        }
        var cp = _checkpoints[slot];
        for (int i = 0; i < _buffers.Length; i++)
            if (cp.Buffers[i] is { } copies)
                for (int l = 0; l < copies.Length; l++) _buffers[i][l].CopyTo(copies[l]);
        _checkpoints[slot] = (cp.Buffers, Steps, Position);
    }

    /// <summary>Puts back the state saved in checkpoint `slot`: the steps after the save are forgotten, as if they
    /// had not run.</summary>
    public void Restore(int slot)
    {
        if ((uint)slot >= (uint)_checkpoints.Count) throw new ArgumentOutOfRangeException(nameof(slot), $"Checkpoint {slot} was never saved.");
        var cp = _checkpoints[slot];
        for (int i = 0; i < _buffers.Length; i++)
            if (cp.Buffers[i] is { } copies)
                for (int l = 0; l < copies.Length; l++) copies[l].CopyTo(_buffers[i][l]);
        (Steps, Position) = (cp.Steps, cp.Position);
    }

    /// <summary>The highest position the state carried from step to step names (a list entry or a list's stamp;
    /// -1: none): a sequence's next step must not see one at or past its length.</summary>
    public int HighestStatePosition()
    {
        int high = -1;
        foreach (var copies in _buffers)
        {
            if (!copies[0].Spec.PerLayer || copies[0].Spec.Kind != PlanBufferKind.Indices) continue;
            foreach (var b in copies)
                for (int i = 0; i < b.Ints.Length; i++)
                {
                    if (b.Counts[i] == 0) continue;
                    high = Math.Max(high, b.Stamps[i]);
                    foreach (int p in b.Ints[i].AsSpan(0, b.Counts[i])) high = Math.Max(high, p);
                }
        }
        return high;
    }

    /// <summary>The method this sequence decodes through.</summary>
    public SelectionPlan Plan { get; }
    public string Name => Plan.Name;
    public SelectionGranularity Granularity => Plan.Granularity;

    public int Layer => _b.Layer;
    /// <summary>Decode steps begun: 1 during the first.</summary>
    public int Steps { get; private set; }
    /// <summary>Position of the token being decoded.</summary>
    public int Position { get; private set; } = -1;

    private int N => _b.Context;
    private SelectionGranularity G => Plan.Granularity;
    private int Heads => Plan.Heads;

    public void BeginStep(int position)
    {
        Position = position;
        Steps++;
    }

    /// <summary>Binds the operations to the backend of the layer about to be selected.</summary>
    public void Bind(ISelectionBackend backend) => _b = backend;

    /// <summary>Runs the plan's operations for backend.Layer and fills `selection` with the list the layer attends
    /// to. A layer whose every head keeps every position attends densely (bitwise the dense result).</summary>
    public void Select(ISelectionBackend backend, LayerSelection selection)
    {
        if (selection.Granularity != Granularity || selection.Heads != Plan.Heads)
            throw new InvalidOperationException(
                $"The {Name} method selects per {Granularity} ({Plan.Heads} heads) but the layer selection was made for {selection.Granularity} with {selection.Heads} heads.");
        Bind(backend);
        var attend = Plan.Layer(this, backend.Layer);
        selection.Dense = true;
        if (attend is not IndexSet set) return;
        for (int h = 0; h < Plan.Heads; h++)
        {
            var ids = Indices(set, backend.Layer, h);
            ids.CopyTo(selection.Buffer(h));
            selection.SetCount(h, ids.Length);
            if (ids.Length < backend.Context) selection.Dense = false;
        }
    }

    private Buffer At(int id, int layer) => _buffers[id][_buffers[id].Length == 1 ? 0 : layer];
    private Buffer At(int id) => At(id, Layer);

    /// <summary>A head's list (list 0 of its depth) of an index buffer at a layer.</summary>
    public ReadOnlySpan<int> Indices(IndexSet set, int layer, int head, int list = 0)
    {
        var b = At(set.Id, layer);
        int i = head * b.Spec.Depth + list;
        return b.Ints[i].AsSpan(0, b.Counts[i]);
    }

    public int Flag(FlagSet set, int layer, int head) => At(set.Id, layer).Flags[head];

    /// <summary>A head's score row of a score buffer at a layer (its allocated length; entries past what the last
    /// operation wrote are stale).</summary>
    public ReadOnlySpan<float> Scores(ScoreSet set, int layer, int head) => At(set.Id, layer).Floats[head];

    /// <summary>A flag summed over heads and layers (a counter's total).</summary>
    public long Total(FlagSet set)
    {
        long t = 0;
        foreach (var b in _buffers[set.Id]) foreach (int f in b.Flags) t += f;
        return t;
    }

    private static Span<T> Grow<T>(ref T[] a, int n)
    {
        if (a.Length < n) a = new T[Math.Max(n, 2 * a.Length)];
        return a.AsSpan(0, n);
    }

    private Span<float> Row(ScoreSet s, int head, int n) => Grow(ref At(s.Id).Floats[head], n);

    private void SetList(Buffer b, int index, ReadOnlySpan<int> values, int stamp)
    {
        values.CopyTo(Grow(ref b.Ints[index], values.Length));
        b.Counts[index] = values.Length;
        b.Stamps[index] = stamp;
    }

    private bool Admits(HeadMask m, int head) => m.When == HeadMask.Kind.All || m.Admits(At(m.Flags.Id).Flags[head]);

    public void ScoreAll(ScoreSet dst, HeadMask only = default)
    {
        for (int h = 0; h < Heads; h++)
            if (Admits(only, h)) _b.ScoreAll(h, G, Row(dst, h, N));
    }

    public void ScoreList(IndexSet list, ScoreSet dst)
    {
        var l = At(list.Id);
        for (int h = 0; h < Heads; h++)
        {
            int i = h * l.Spec.Depth, count = l.Counts[i];
            if (count > 0) _b.Score(h, G, l.Ints[i].AsSpan(0, count), Row(dst, h, count));
        }
    }

    public void ScoreRange(FlagSet start, FlagSet length, ScoreSet dst)
    {
        var from = At(start.Id).Flags;
        var len = At(length.Id).Flags;
        for (int h = 0; h < Heads; h++)
            if (len[h] > 0) _b.ScoreRange(h, G, from[h], Row(dst, h, len[h]));
    }

    public void PageBounds(ScoreSet dst)
    {
        int pages = (N + _b.PageSize - 1) / _b.PageSize;
        for (int h = 0; h < Heads; h++) _b.PageUpperBounds(h, G, Row(dst, h, pages));
    }

    public void TopK(ScoreSet scores, IndexSet? candidates, Budget budget, IndexSet dst, HeadMask only = default)
    {
        int k = budget.Resolve(N);
        var d = At(dst.Id);
        for (int h = 0; h < Heads; h++)
        {
            if (!Admits(only, h)) continue;
            ReadOnlySpan<int> c = default;
            int length = N;
            if (candidates is IndexSet cs)
            {
                var cb = At(cs.Id);
                length = cb.Counts[h * cb.Spec.Depth];
                c = cb.Ints[h * cb.Spec.Depth].AsSpan(0, length);
            }
            var row = Row(scores, h, length);
            int i = h * d.Spec.Depth;
            d.Counts[i] = _b.TopK(row, c, k, Grow(ref d.Ints[i], Math.Min(k, length)));
            d.Stamps[i] = Position;
        }
    }

    public void TopPages(ScoreSet bounds, Budget budget, IndexSet dst)
    {
        int n = N, ps = _b.PageSize, pages = (n + ps - 1) / ps, k = budget.Resolve(n), chosen = Math.Max(1, k / ps);
        bool all = k >= n || chosen >= pages;
        var d = At(dst.Id);
        var pick = Grow(ref _a, pages);
        for (int h = 0; h < Heads; h++)
        {
            int m = all ? Fill(pick, 0, pages - 1)
                : _b.TopK(At(bounds.Id).Floats[h].AsSpan(0, pages - 1), default, chosen - 1, pick);
            pick[m++] = pages - 1; // the page of the current token and the newest keys: always attended
            int i = h * d.Spec.Depth, count = 0;
            var list = Grow(ref d.Ints[i], Math.Min(n, m * ps));
            for (int j = 0; j < m; j++)
                for (int pos = pick[j] * ps, end = Math.Min(n, pos + ps); pos < end; pos++) list[count++] = pos;
            d.Counts[i] = count;
            d.Stamps[i] = Position;
        }
    }

    private static int Fill(Span<int> a, int start, int count)
    {
        for (int j = 0; j < count; j++) a[j] = start + j;
        return count;
    }

    public void Window(int sinks, Budget budget, IndexSet dst)
    {
        int n = N, k = budget.Resolve(n), s = Math.Min(sinks, k), recent = k - s;
        var list = Grow(ref _a, k);
        if (k >= n) Fill(list, 0, n);
        else
        {
            Fill(list, 0, s);
            Fill(list[s..], n - recent, recent);
        }
        var d = At(dst.Id);
        for (int h = 0; h < Heads; h++) SetList(d, h * d.Spec.Depth, list[..Math.Min(k, n)], Position);
    }

    public void LfpsCandidates(in LfpsState state, in LfpsRule rule, IndexSet dst)
    {
        int n = N;
        var hist = At(state.History.Id);
        var refresh = At(state.Refresh.Id).Flags;
        var last = At(state.LastRefresh.Id).Flags;
        var d = At(dst.Id);
        for (int h = 0; h < Heads; h++)
        {
            int depth = hist.Spec.Depth, first = h * depth;
            bool due = hist.Counts[first] == 0 || (rule.Interval > 0 && Steps - last[h] >= rule.Interval);
            refresh[h] = due ? 1 : 0;
            if (due)
            {
                d.Counts[h * d.Spec.Depth] = 0;
                continue;
            }
            Grow(ref _a, n);
            Grow(ref _c, n);
            Grow(ref _e, n);
            int c = _b.UnionRange(default, 0, Math.Min(rule.Sinks, n), _a);
            c = _b.UnionRange(_a.AsSpan(0, c), n - rule.Recent, n, _c);
            (int[] cur, int[] other) = (_c, _a);
            for (int age = 0; age < depth && hist.Counts[first + age] > 0; age++)
            {
                var past = hist.Ints[first + age].AsSpan(0, hist.Counts[first + age]);
                int shift = Position - hist.Stamps[first + age];
                for (int pass = 0; pass < (shift == 0 ? 1 : 2); pass++)
                {
                    int e = _b.Expand(past, pass == 0 ? 0 : shift, rule.Radius, _e);
                    c = _b.Union(cur.AsSpan(0, c), _e.AsSpan(0, e), other);
                    (cur, other) = (other, cur);
                }
            }
            SetList(d, h * d.Spec.Depth, cur.AsSpan(0, c), Position);
        }
    }

    public void LfpsSelect(ScoreSet candidateScores, IndexSet candidates, Budget budget, IndexSet dst, in LfpsState state, float drop)
    {
        TopK(candidateScores, candidates, budget, dst, HeadMask.WhereNot(state.Refresh));
        if (drop <= 0) return;
        var refresh = At(state.Refresh.Id).Flags;
        var reference = At(state.ReferenceMax.Id).Floats;
        var cb = At(candidates.Id);
        for (int h = 0; h < Heads; h++)
        {
            int count = cb.Counts[h * cb.Spec.Depth];
            if (refresh[h] != 0 || count == 0) continue;
            float best = Max(At(candidateScores.Id).Floats[h].AsSpan(0, count));
            if (best < Grow(ref reference[h], 1)[0] - drop) refresh[h] = 2;
        }
    }

    public void LfpsRemember(IndexSet selected, ScoreSet allScores, in LfpsState state)
    {
        var refresh = At(state.Refresh.Id).Flags;
        var hist = At(state.History.Id);
        var sel = At(selected.Id);
        for (int h = 0; h < Heads; h++)
        {
            if (refresh[h] != 0)
            {
                Grow(ref At(state.ReferenceMax.Id).Floats[h], 1)[0] = Max(At(allScores.Id).Floats[h].AsSpan(0, N));
                At(state.LastRefresh.Id).Flags[h] = Steps;
                At(state.Refreshes.Id).Flags[h]++;
                if (refresh[h] == 2) At(state.Triggered.Id).Flags[h]++;
            }
            int depth = hist.Spec.Depth, first = h * depth;
            for (int age = depth - 1; age > 0; age--)
                SetList(hist, first + age, hist.Ints[first + age - 1].AsSpan(0, hist.Counts[first + age - 1]), hist.Stamps[first + age - 1]);
            SetList(hist, first, Indices(selected, Layer, h), Position);
        }
    }

    private static float Max(ReadOnlySpan<float> a)
    {
        float m = float.NegativeInfinity;
        foreach (float x in a) if (x > m) m = x;
        return m;
    }

    public void PrhsShare(in PrhsState state, in PrhsRule rule, Budget budget)
    {
        int n = N, k = budget.Resolve(n);
        var decision = At(state.Decision.Id).Flags;
        var at = At(state.RetrievedAt.Id).Flags;
        var start = At(state.DomainStart.Id).Flags;
        var length = At(state.DomainLength.Id).Flags;
        var frozenFrom = At(state.FrozenFrom.Id).Flags;
        var frozenCount = At(state.FrozenCount.Id).Flags;
        var reference = At(state.Reference.Id).Floats;
        var (sinks, local, salient) = rule.Split(k);
        int middleEnd = n - local, qLength = _b.QueryLength(G);
        for (int h = 0; h < Heads; h++)
        {
            (frozenFrom[h], frozenCount[h], length[h]) = (0, 0, 0);
            if (k >= n)
            {
                decision[h] = 2;
                continue;
            }
            var q = Grow(ref reference[h], qLength);
            if (at[h] > 0 && Steps - at[h] < rule.Block && _b.QueryCosine(h, G, q) >= rule.Tau)
            {
                decision[h] = 1;
                continue;
            }
            decision[h] = 0;
            _b.CopyQuery(h, G, q);
            at[h] = Steps;
            int low = Math.Max(sinks, (int)Math.Floor(rule.Prune * n));
            int freezeEnd = Math.Min((int)Math.Floor(rule.Freeze * n), middleEnd);
            start[h] = low;
            if (freezeEnd > low && rule.FreezeFromPrevious && At(state.RetrievedAt.Id, Layer - 1).Flags[h] > 0)
            {
                var past = Indices(state.Salient, Layer - 1, h);
                int a = LowerBound(past, low);
                (frozenFrom[h], frozenCount[h]) = (a, Math.Min(LowerBound(past, freezeEnd) - a, salient));
                start[h] = freezeEnd;
            }
            length[h] = Math.Max(0, middleEnd - start[h]);
        }
    }

    private static int LowerBound(ReadOnlySpan<int> sorted, int value)
    {
        int i = sorted.BinarySearch(value);
        return i < 0 ? ~i : i;
    }

    public void PrhsPick(ScoreSet domainScores, in PrhsState state, in PrhsRule rule, Budget budget, IndexSet dst)
    {
        int n = N, k = budget.Resolve(n);
        var decision = At(state.Decision.Id).Flags;
        var salientSets = At(state.Salient.Id);
        var d = At(dst.Id);
        var (sinks, local, salient) = rule.Split(k);
        for (int h = 0; h < Heads; h++)
        {
            int i = h * d.Spec.Depth;
            if (decision[h] == 2)
            {
                Fill(Grow(ref d.Ints[i], n), 0, n);
                (d.Counts[i], d.Stamps[i]) = (n, Position);
                continue;
            }
            int si = h * salientSets.Spec.Depth;
            if (decision[h] == 0)
            {
                int from = At(state.FrozenFrom.Id).Flags[h], frozen = At(state.FrozenCount.Id).Flags[h];
                var past = frozen > 0 ? Indices(state.Salient, Layer - 1, h).Slice(from, frozen) : default;
                int picked = Pick(At(domainScores.Id).Floats[h], At(state.DomainStart.Id).Flags[h], At(state.DomainLength.Id).Flags[h],
                    salient - frozen, rule);
                var set = Grow(ref salientSets.Ints[si], frozen + picked);
                (salientSets.Counts[si], salientSets.Stamps[si]) = (_b.Union(past, _rest.AsSpan(0, picked), set), Position);
            }
            var kept = salientSets.Ints[si].AsSpan(0, salientSets.Counts[si]);
            int c = _b.UnionRange(kept, 0, sinks, Grow(ref _a, kept.Length + sinks));
            d.Counts[i] = _b.UnionRange(_a.AsSpan(0, c), n - local, n, Grow(ref d.Ints[i], c + local));
            d.Stamps[i] = Position;
        }
    }

    /// <summary>PrHS's pick from the scores of [start, start + length): the ±radius dilation of the `Top` best,
    /// filled up to k with the next best, into _rest (ascending positions). Returns the count.</summary>
    private int Pick(float[] domainScores, int start, int length, int k, in PrhsRule rule)
    {
        if (k <= 0 || length <= 0) return 0;
        var scores = domainScores.AsSpan(0, length);
        int top = Math.Min(Math.Min(rule.Top, k), length), dilated = 0;
        if (top > 0 && rule.Radius > 0)
        {
            int t = _b.TopK(scores, default, top, Grow(ref _top, top));
            for (int i = 0; i < t; i++) _top[i] += start;
            var wide = Grow(ref _dilated, t * (2 * rule.Radius + 1));
            int e = _b.Expand(_top.AsSpan(0, t), 0, rule.Radius, wide);
            // Keep the dilation inside the retrieval domain: below it lie positions ETF froze or PSAW pruned.
            int lo = LowerBound(wide[..e], start), hi = LowerBound(wide[..e], start + length);
            wide[lo..hi].CopyTo(wide);
            dilated = hi - lo;
        }
        if (dilated == 0 || dilated >= k)
        {
            int m = _b.TopK(scores, default, k, Grow(ref _rest, Math.Min(k, length)));
            for (int i = 0; i < m; i++) _rest[i] += start;
            return m;
        }
        int rest = _b.TopK(scores, default, k - dilated, Grow(ref _e, k - dilated));
        for (int i = 0; i < rest; i++) _e[i] += start;
        return _b.Union(_dilated.AsSpan(0, dilated), _e.AsSpan(0, rest), Grow(ref _rest, k));
    }
}
