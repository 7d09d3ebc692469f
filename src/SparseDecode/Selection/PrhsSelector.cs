using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>PrHS with the opt-in δ verification (`--param verify=bound|sample`; not the paper's method, which is
/// <see cref="PrhsPlan"/>): the plan's selectors, then each set's dropped mass checked against a target δ*. A host
/// policy: its fresh retrievals and dense fallbacks are not written as plan operations, so on the GPU it runs with
/// a round trip per operation. Without a verification that fires (δ* = 1) it selects exactly what the plan does.
/// <list type="bullet">
/// <item>CIS (time): a retrieved salient set (top-k plus the ±radius neighbours of its `top` best positions) is
/// shared by the following steps while the query's cosine to the retrieval step's stays ≥ τ, for at most `block`
/// steps.</item>
/// <item>PSAW (recency): from layer `from` on, a retrieval ignores the oldest ⌊(1 − φ^(α(ℓ−ℓs)/(N−ℓs)))·t⌋
/// positions (sinks excepted): deeper layers look at a narrower recent window.</item>
/// <item>ETF (depth): from layer `from` on, the salient positions below ⌊(1 − ψ^(γ(ℓ−ℓs)/(N−ℓs)))·t⌋ are frozen:
/// taken from the previous layer's set, not retrieved again.</item>
/// <item>δ control: the set's dropped mass is bounded (page min/max bounds, exact on the kept keys) or estimated
/// (uniform samples); above δ* a shared or narrowed set is replaced by a fresh retrieval over the whole context,
/// and if that still exceeds δ*, the head attends densely at this layer and step; while the query stays within
/// τ of that retrieval (and the block), the dense decision is shared like a set.</item>
/// </list></summary>
public sealed class PrhsSelector : SelectorBase
{
    public enum Verification { Bound, Sample, Off }

    /// <summary>The plan's selectors' settings and the verifier's.</summary>
    public sealed record Options : PrhsPlan.Options
    {
        /// <summary>Target dropped mass δ*.</summary>
        public double Delta { get; init; } = 0.05;
        /// <summary>The verifier (this policy exists for it: PrHS without verification is <see cref="PrhsPlan"/>).</summary>
        public Verification Verify { get; init; } = Verification.Bound;
        /// <summary>Bound verification: most pages scored exactly (largest contribution first, until δ* is certified).</summary>
        public int Refine { get; init; } = 64;
        /// <summary>Sample verification: unselected keys drawn.</summary>
        public int Samples { get; init; } = 64;
    }

    /// <summary>Per layer, over the decode so far.</summary>
    public sealed record LayerStatistics(int Layer, long Retrievals, long Shares, long FreshRetrievals, long DenseFallbacks,
        double MeanDelta, double MaxDelta);

    private readonly Options _o;
    private readonly int _dense, _from;
    private readonly double[] _prune, _freeze;
    private readonly int[][] _set;
    private readonly int[] _setCount, _retrievedAt;
    private readonly bool[] _valid, _denseShared;
    private readonly float[][] _reference;
    private readonly double[] _lastDelta;
    private readonly long[] _retrievals, _shares, _fresh, _denseFallbacks, _deltaCount;
    private readonly double[] _deltaSum, _deltaMax;
    private float[] _scores = new float[1024];
    private int[] _top = new int[64], _dilated = new int[256], _rest = new int[1024], _frozen = new int[256], _tmp = new int[1024];

    public PrhsSelector(ModelConfig config, Budget budget, Options? options = null,
        SelectionGranularity granularity = SelectionGranularity.QueryHead)
        : base("prhs", config, budget, granularity)
    {
        _o = options ?? new Options();
        _dense = _o.DenseLayers ?? Depth.DenseLayers(Layers);
        _from = _o.From ?? _dense;
        if (_dense < 0 || _dense > Layers) throw new ArgumentException($"PrHS dense layers must be in [0, {Layers}], got {_dense}.");
        if (_from < 0 || _from > Layers) throw new ArgumentException($"PrHS 'from' layer must be in [0, {Layers}], got {_from}.");
        if (_o.Verify == Verification.Off)
            throw new ArgumentException("PrHS without verification is the plan PrhsPlan; this host policy runs only the opt-in δ verification (bound or sample).");
        _prune = PrhsPlan.Schedule(_o.Phi, _o.Alpha, _from, Layers);
        _freeze = PrhsPlan.Schedule(_o.Psi, _o.Gamma, _from, Layers);
        int states = Layers * Heads;
        _set = Jagged<int>(states, 64);
        _setCount = new int[states];
        _retrievedAt = new int[states];
        _valid = new bool[states];
        _denseShared = new bool[states];
        _reference = new float[states][];
        _lastDelta = new double[states];
        Array.Fill(_lastDelta, double.NaN);
        _retrievals = new long[Layers];
        _shares = new long[Layers];
        _fresh = new long[Layers];
        _denseFallbacks = new long[Layers];
        _deltaCount = new long[Layers];
        _deltaSum = new double[Layers];
        _deltaMax = new double[Layers];
    }

    public Options Settings => _o;
    public int DenseLayers => _dense;
    public int From => _from;

    /// <summary>Oldest positions PSAW leaves out of a retrieval at this layer for a context of n.</summary>
    public int PrunedPrefix(int layer, int n) => (int)Math.Floor(_prune[layer] * n);

    /// <summary>Positions below which ETF takes the previous layer's salient set at this layer.</summary>
    public int FrozenPrefix(int layer, int n) => (int)Math.Floor(_freeze[layer] * n);

    /// <summary>The measured δ (bound or estimate; 0 after a dense fallback; NaN when unmeasured) of a layer and
    /// head at the last step it was selected.</summary>
    public double LastDelta(int layer, int head) => _lastDelta[layer * Heads + head];

    public IReadOnlyList<LayerStatistics> Statistics()
    {
        var rows = new LayerStatistics[Layers];
        for (int l = 0; l < Layers; l++)
            rows[l] = new LayerStatistics(l, _retrievals[l], _shares[l], _fresh[l], _denseFallbacks[l],
                _deltaCount[l] > 0 ? _deltaSum[l] / _deltaCount[l] : double.NaN, _deltaCount[l] > 0 ? _deltaMax[l] : double.NaN);
        return rows;
    }

    protected override void SelectLayer(ISelectionBackend backend, LayerSelection selection)
    {
        int layer = backend.Layer, n = backend.Context, budget = Budget.Resolve(n);
        if (layer < _dense || budget >= n)
        {
            selection.Dense = true;
            return;
        }
        // Small budgets keep most of their room for the salient set: sinks take at most an eighth, the local
        // window at most a quarter.
        int sinks = Math.Min(_o.Sinks, budget / 8), local = Math.Min(_o.Local, budget / 4);
        int salient = budget - sinks - local, middleEnd = n - local;
        Ensure(ref _scores, n);
        Ensure(ref _tmp, n);
        int denseHeads = 0;
        for (int h = 0; h < Heads; h++)
        {
            int s = layer * Heads + h;
            bool shared = _valid[s] && Steps - _retrievedAt[s] < _o.Block
                && backend.QueryCosine(h, Granularity, _reference[s]) >= _o.Tau;
            bool narrowed = false;
            if (shared && _denseShared[s])
            {
                // CIS shares the outcome too: the query has not moved since no set of the budget met δ*.
                _shares[layer]++;
                _denseFallbacks[layer]++;
                denseHeads++;
                SelectAll(selection, h, n);
                Record(layer, s, 0);
                continue;
            }
            if (shared) _shares[layer]++;
            else
            {
                narrowed = Retrieve(backend, layer, h, n, sinks, middleEnd, salient, whole: false);
                _retrievals[layer]++;
            }
            var dst = selection.Buffer(h);
            int count = Compose(backend, s, n, sinks, local, dst);
            double delta = Measure(backend, layer, h, dst[..count]);
            if (delta > _o.Delta && (shared || narrowed))
            {
                _fresh[layer]++;
                Retrieve(backend, layer, h, n, sinks, middleEnd, salient, whole: true);
                count = Compose(backend, s, n, sinks, local, dst);
                delta = Granularity == SelectionGranularity.QueryHead
                    ? backend.DroppedMass(_scores.AsSpan(0, n), dst[..count])
                    : Measure(backend, layer, h, dst[..count]);
            }
            _denseShared[s] = delta > _o.Delta;
            if (_denseShared[s])
            {
                SelectAll(selection, h, n);
                _denseFallbacks[layer]++;
                denseHeads++;
                delta = 0;
            }
            else selection.SetCount(h, count);
            Record(layer, s, delta);
        }
        if (denseHeads == Heads) selection.Dense = true;
    }

    private void Record(int layer, int s, double delta)
    {
        _lastDelta[s] = delta;
        if (double.IsNaN(delta)) return;
        _deltaSum[layer] += delta;
        _deltaCount[layer]++;
        if (delta > _deltaMax[layer]) _deltaMax[layer] = delta;
    }

    /// <summary>Retrieves a head's salient set into its state. Narrowed by PSAW and ETF unless `whole`; returns
    /// whether it was narrowed. With `whole`, _scores holds every position's score afterwards.</summary>
    private bool Retrieve(ISelectionBackend backend, int layer, int h, int n, int sinks, int middleEnd, int salient, bool whole)
    {
        int s = layer * Heads + h;
        int low = sinks, start = sinks, frozen = 0;
        if (!whole && layer >= _from)
        {
            low = Math.Max(sinks, PrunedPrefix(layer, n));
            int freezeEnd = Math.Min(FrozenPrefix(layer, n), middleEnd);
            int prev = s - Heads;
            start = low;
            if (freezeEnd > low && layer - 1 >= _dense && _valid[prev])
            {
                var past = _set[prev].AsSpan(0, _setCount[prev]);
                int a = past.BinarySearch(low), b = past.BinarySearch(freezeEnd);
                a = a < 0 ? ~a : a;
                b = b < 0 ? ~b : b;
                frozen = Math.Min(b - a, salient);
                Ensure(ref _frozen, frozen);
                past.Slice(a, frozen).CopyTo(_frozen);
                start = freezeEnd;
            }
        }
        int length = Math.Max(0, middleEnd - start);
        if (whole) backend.ScoreAll(h, Granularity, _scores.AsSpan(0, n));
        else if (length > 0) backend.ScoreRange(h, Granularity, start, _scores.AsSpan(start, length));
        int picked = Pick(backend, start, length, salient - frozen);
        Ensure(ref _set[s], frozen + picked);
        _setCount[s] = backend.Union(_frozen.AsSpan(0, frozen), _rest.AsSpan(0, picked), _set[s]);
        _reference[s] ??= new float[backend.QueryLength(Granularity)];
        backend.CopyQuery(h, Granularity, _reference[s]);
        _retrievedAt[s] = Steps;
        _valid[s] = true;
        return low > sinks || frozen > 0 || start > low;
    }

    /// <summary>From the scores of [start, start + length) in _scores: the ±radius dilation of the `Top` best
    /// positions, filled up to `k` with the next best, into _rest (ascending). Returns the count.</summary>
    private int Pick(ISelectionBackend backend, int start, int length, int k)
    {
        if (k <= 0 || length <= 0) return 0;
        var scores = _scores.AsSpan(start, length);
        Ensure(ref _rest, Math.Min(k, length));
        int top = Math.Min(Math.Min(_o.Top, k), length), dilated = 0;
        if (top > 0 && _o.Radius > 0)
        {
            Ensure(ref _top, top);
            Ensure(ref _dilated, top * (2 * _o.Radius + 1));
            backend.TopK(scores, default, top, _top);
            for (int i = 0; i < top; i++) _top[i] += start;
            dilated = backend.Expand(_top.AsSpan(0, top), 0, _o.Radius, _dilated);
            // Keep the dilation inside the retrieval domain: below it lie positions ETF froze or PSAW pruned.
            int lo = _dilated.AsSpan(0, dilated).BinarySearch(start), hi = _dilated.AsSpan(0, dilated).BinarySearch(start + length);
            lo = lo < 0 ? ~lo : lo;
            hi = hi < 0 ? ~hi : hi;
            _dilated.AsSpan(lo, hi - lo).CopyTo(_dilated);
            dilated = hi - lo;
        }
        if (dilated == 0 || dilated >= k)
        {
            int m = backend.TopK(scores, default, k, _rest);
            for (int i = 0; i < m; i++) _rest[i] += start;
            return m;
        }
        Ensure(ref _tmp, k);
        int rest = backend.TopK(scores, default, k - dilated, _tmp);
        for (int i = 0; i < rest; i++) _tmp[i] += start;
        Ensure(ref _rest, k);
        return backend.Union(_dilated.AsSpan(0, dilated), _tmp.AsSpan(0, rest), _rest);
    }

    /// <summary>sinks ∪ salient ∪ local window, ascending, into dst.</summary>
    private int Compose(ISelectionBackend backend, int s, int n, int sinks, int local, Span<int> dst)
    {
        int c = backend.UnionRange(_set[s].AsSpan(0, _setCount[s]), 0, sinks, _tmp);
        return backend.UnionRange(_tmp.AsSpan(0, c), n - local, n, dst);
    }

    /// <summary>The verifier's δ for a selection head: the largest over its query heads.</summary>
    private double Measure(ISelectionBackend backend, int layer, int h, ReadOnlySpan<int> selected)
    {
        int first = Granularity == SelectionGranularity.QueryHead ? h : h * Group;
        int count = Granularity == SelectionGranularity.QueryHead ? 1 : Group;
        double worst = 0;
        for (int q = first; q < first + count; q++)
        {
            double d = _o.Verify == Verification.Bound
                ? backend.DroppedMassBound(q, selected, _o.Refine, _o.Delta)
                : backend.DroppedMassEstimate(q, selected, _o.Samples, ((ulong)Steps << 32) ^ ((ulong)(layer * 4096 + q + 1) * 0x9E3779B97F4A7C15UL));
            if (d > worst) worst = d;
        }
        return worst;
    }
}
