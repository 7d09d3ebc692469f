using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>LFPS, Learn From the Past for Sparse indexing (Yao and Wang, 2025): each layer and head keeps the
/// top-k positions of its last few decode steps. This step's candidates are those positions again (vertical
/// pattern), the same positions moved forward by the steps since (slash pattern), each widened by ±radius
/// (positional expansion), plus the attention sinks and the recent window. Only the candidates are scored; their
/// top-k is this step's selection and joins the history. A full exact top-k refreshes the history on the first
/// decode step, every `interval` steps, and when the best candidate score falls `drop` below the best score of
/// the last full refresh (the history has lost what the head attends to).</summary>
public sealed class LfpsSelector : SelectorBase
{
    public sealed record Options
    {
        /// <summary>Past steps whose top-k sets feed the candidates.</summary>
        public int History { get; init; } = 2;
        /// <summary>Positional expansion: each history position brings its ±radius neighbours.</summary>
        public int Radius { get; init; } = 1;
        public int Sinks { get; init; } = 4;
        /// <summary>Most recent positions always among the candidates (the new token has no history).</summary>
        public int Recent { get; init; } = 16;
        /// <summary>Steps between full refreshes; 0: only the first decode step and the drop trigger.</summary>
        public int Interval { get; init; } = 32;
        /// <summary>Refresh when max candidate score &lt; max score at the last refresh − drop; 0 disables.</summary>
        public float Drop { get; init; } = 2f;
        /// <summary>Leading layers attending densely.</summary>
        public int DenseLayers { get; init; }
    }

    private readonly Options _o;
    private readonly int[][][] _history;   // [layer·Heads + head][slot] → ascending positions
    private readonly int[][] _historyCount;
    private readonly int[][] _historyPosition;
    private readonly int[] _filled, _newest, _lastRefresh;
    private readonly float[] _refMax;
    private readonly int[][] _candidates;
    private readonly int[] _candidateCount;
    private int[] _a = new int[1024], _b = new int[1024], _e = new int[1024];
    private float[] _scores = new float[1024];
    private readonly int[] _one = new int[1];

    public LfpsSelector(ModelConfig config, Budget budget, Options? options = null,
        SelectionGranularity granularity = SelectionGranularity.QueryHead)
        : base("lfps", config, budget, granularity)
    {
        _o = options ?? new Options();
        if (_o.History < 1) throw new ArgumentException($"LFPS needs a history of at least 1 step, got {_o.History}.");
        int states = Layers * Heads;
        _history = new int[states][][];
        for (int s = 0; s < states; s++) _history[s] = Jagged<int>(_o.History, 64);
        _historyCount = Jagged<int>(states, _o.History);
        _historyPosition = Jagged<int>(states, _o.History);
        _filled = new int[states];
        _newest = new int[states];
        _lastRefresh = new int[states];
        _refMax = new float[states];
        _candidates = Jagged<int>(Heads, 256);
        _candidateCount = new int[Heads];
    }

    public Options Settings => _o;
    /// <summary>Full exact top-k selections (first step, periodic and triggered).</summary>
    public long Refreshes { get; private set; }
    /// <summary>Of the refreshes, those the score-drop trigger caused.</summary>
    public long TriggeredRefreshes { get; private set; }
    /// <summary>Head selections made from candidates only, and the candidates they scored in total.</summary>
    public long CandidateSelections { get; private set; }
    public long CandidatesScored { get; private set; }

    /// <summary>The candidates a head scored at the last layer selected (empty where that head refreshed).</summary>
    public ReadOnlySpan<int> LastCandidates(int head) => _candidates[head].AsSpan(0, _candidateCount[head]);

    /// <summary>A layer and head's most recent selection (the history's newest entry).</summary>
    public ReadOnlySpan<int> History(int layer, int head)
    {
        int s = layer * Heads + head;
        return _filled[s] == 0 ? default : _history[s][_newest[s]].AsSpan(0, _historyCount[s][_newest[s]]);
    }

    protected override void SelectLayer(ISelectionBackend backend, LayerSelection selection)
    {
        int layer = backend.Layer, n = backend.Context, k = Budget.Resolve(n);
        if (layer < _o.DenseLayers || k >= n)
        {
            selection.Dense = true;
            return;
        }
        Ensure(ref _scores, n);
        for (int h = 0; h < Heads; h++)
        {
            int s = layer * Heads + h;
            var dst = selection.Buffer(h);
            int count = 0;
            bool refresh = _filled[s] == 0 || (_o.Interval > 0 && Steps - _lastRefresh[s] >= _o.Interval);
            _candidateCount[h] = 0;
            if (!refresh)
            {
                var candidates = BuildCandidates(backend, s, n);
                var scores = _scores.AsSpan(0, candidates.Length);
                backend.Score(h, Granularity, candidates, scores);
                count = backend.TopK(scores, candidates, k, dst);
                CandidateSelections++;
                CandidatesScored += candidates.Length;
                Ensure(ref _candidates[h], candidates.Length);
                candidates.CopyTo(_candidates[h]);
                _candidateCount[h] = candidates.Length;
                if (_o.Drop > 0 && backend.TopK(scores, default, 1, _one) == 1 && scores[_one[0]] < _refMax[s] - _o.Drop)
                {
                    refresh = true;
                    TriggeredRefreshes++;
                }
            }
            if (refresh)
            {
                var scores = _scores.AsSpan(0, n);
                backend.ScoreAll(h, Granularity, scores);
                count = backend.TopK(scores, default, k, dst);
                backend.TopK(scores, default, 1, _one);
                _refMax[s] = scores[_one[0]];
                _lastRefresh[s] = Steps;
                Refreshes++;
            }
            selection.SetCount(h, count);
            Remember(s, dst[..count]);
        }
    }

    /// <summary>sinks ∪ recent ∪ over the history: expand(vertical) ∪ expand(slash).</summary>
    private ReadOnlySpan<int> BuildCandidates(ISelectionBackend backend, int s, int n)
    {
        Ensure(ref _a, n);
        Ensure(ref _b, n);
        Ensure(ref _e, n);
        int c = backend.UnionRange(default, 0, Math.Min(_o.Sinks, n), _a);
        c = backend.UnionRange(_a.AsSpan(0, c), n - _o.Recent, n, _b);
        (int[] cur, int[] other) = (_b, _a);
        for (int age = 0; age < _filled[s]; age++)
        {
            int slot = (_newest[s] - age + _o.History) % _o.History;
            var past = _history[s][slot].AsSpan(0, _historyCount[s][slot]);
            int shift = Position - _historyPosition[s][slot];
            for (int pass = 0; pass < (shift == 0 ? 1 : 2); pass++)
            {
                int e = backend.Expand(past, pass == 0 ? 0 : shift, _o.Radius, _e);
                c = backend.Union(cur.AsSpan(0, c), _e.AsSpan(0, e), other);
                (cur, other) = (other, cur);
            }
        }
        return cur.AsSpan(0, c);
    }

    private void Remember(int s, ReadOnlySpan<int> selected)
    {
        int slot = _filled[s] == 0 ? 0 : (_newest[s] + 1) % _o.History;
        Ensure(ref _history[s][slot], selected.Length);
        selected.CopyTo(_history[s][slot]);
        _historyCount[s][slot] = selected.Length;
        _historyPosition[s][slot] = Position;
        _newest[s] = slot;
        if (_filled[s] < _o.History) _filled[s]++;
    }
}
