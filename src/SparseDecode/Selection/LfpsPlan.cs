using SparseDecode.Model;
using SparseDecode.Cpu;

namespace SparseDecode.Selection;

/// <summary>LFPS, Learn From the Past for Sparse indexing (Yao and Wang, 2025): each layer and head keeps the
/// top-k positions of its last few decode steps. This step's candidates are those positions again (vertical
/// pattern), the same positions moved forward by the steps since (slash pattern), each widened by ±radius
/// (positional expansion), plus the attention sinks and the recent window. Only the candidates are scored; their
/// top-k is this step's selection and joins the history. A full exact top-k refreshes the history on the first
/// decode step, every `interval` steps, and when the best candidate score falls `drop` below the best score of
/// the last full refresh (the history has lost what the head attends to). Per layer: candidates, their scores,
/// their top-k with the trigger, then scores and top-k of every key for the heads that refresh (the others skip them).</summary>
public sealed class LfpsPlan : SelectionPlan
{
    public sealed record Options
    {
        /// <summary>Past steps whose top-k sets feed the candidates.</summary>
        public required int History { get; init; }
        /// <summary>Positional expansion: each history position brings its ±radius neighbours.</summary>
        public required int Radius { get; init; }
        public required int Sinks { get; init; }
        /// <summary>Most recent positions always among the candidates (the new token has no history).</summary>
        public required int Recent { get; init; }
        /// <summary>Steps between full refreshes; 0: only the first decode step and the drop trigger.</summary>
        public required int Interval { get; init; }
        /// <summary>Refresh when max candidate score &lt; max score at the last refresh − drop; 0 disables.</summary>
        public required float Drop { get; init; }
        /// <summary>Leading layers attending densely.</summary>
        public required int DenseLayers { get; init; }
    }

    private readonly Options _o;
    private readonly LfpsState _state;
    private readonly IndexSet _candidates, _selected;
    private readonly ScoreSet _candidateScores, _all;

    public LfpsPlan(ModelConfig config, Budget budget, Options options, SelectionGranularity granularity, int maxContext = 0)
        : base("lfps", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        _o = options;
        if (_o.History < 1) throw new ArgumentException($"LFPS needs a history of at least 1 step, got {_o.History}.");
        int keep = MaxKeep;
        long candidates = (long)_o.Sinks + _o.Recent + 2L * _o.History * keep * (2L * _o.Radius + 1);
        int candidateCapacity = (int)Math.Min(MaxContext, candidates);
        _state = new LfpsState(
            Layout.Indices("history", keep, perLayer: true, depth: _o.History),
            Layout.Flags("refresh"),
            Layout.Flags("last-refresh", perLayer: true),
            Layout.Scores("reference-max", 1, perLayer: true),
            Layout.Flags("refreshes", perLayer: true),
            Layout.Flags("triggered", perLayer: true));
        _candidates = Layout.Indices("candidates", candidateCapacity);
        _candidateScores = Layout.Scores("candidate-scores", candidateCapacity);
        _all = Layout.Scores("scores", MaxContext);
        _selected = Layout.Indices("selected", keep);
    }

    public Options Settings => _o;
    public LfpsState State => _state;
    /// <summary>The candidate lists of the last layer selected (count 0 where a head refreshed).</summary>
    public IndexSet Candidates => _candidates;

    public override IndexSet? Layer(ISelectionOps ops, int layer)
    {
        if (layer < _o.DenseLayers) return null;
        var rule = new LfpsRule(_o.Sinks, _o.Recent, _o.Radius, _o.Interval);
        ops.LfpsCandidates(_state, rule, _candidates);
        ops.ScoreList(_candidates, _candidateScores);
        ops.LfpsSelect(_candidateScores, _candidates, Budget, _selected, _state, _o.Drop);
        ops.ScoreAll(_all, HeadMask.Where(_state.Refresh));
        ops.TopK(_all, null, Budget, _selected, HeadMask.Where(_state.Refresh));
        ops.LfpsRemember(_selected, _all, _state);
        return _selected;
    }
}
