using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>HShare (Wu et al., ICLR 2025): hierarchical sharing of critical-token indices. A head's critical set is
/// the sinks, the local window and the top-scored ("heavy") positions between them; those indices are computed
/// once and shared across queries (a retrieval serves `query` consecutive decode steps), across layers (one
/// selection serves `layers` consecutive layers) and across heads (one selection per KV head serves its query
/// group: the default granularity). Per selecting layer this is PrHS's CIS with the cosine test always passing,
/// no dilation and no PSAW/ETF, so it runs on PrHS's operations; a sharing layer issues none and attends to the
/// selecting layer's list of this step.</summary>
public sealed class HSharePlan : SelectionPlan
{
    public sealed record Options
    {
        /// <summary>The public configuration's sink_const.</summary>
        public required int Sinks { get; init; }
        /// <summary>The public configuration's local_const.</summary>
        public required int Local { get; init; }
        /// <summary>Decode steps one retrieval serves (share_query_const).</summary>
        public required int QueryShare { get; init; }
        /// <summary>Consecutive layers one selection serves (the public configuration shares 16 of 32 layers: pairs).</summary>
        public required int LayerShare { get; init; }
        /// <summary>Leading layers attending densely (the public code makes every layer sparse).</summary>
        public required int DenseLayers { get; init; }
    }

    private readonly Options _o;
    private readonly PrhsState _state;
    private readonly ScoreSet _domain;
    private readonly IndexSet _selected;

    public HSharePlan(ModelConfig config, Budget budget, Options options, SelectionGranularity granularity, int maxContext = 0)
        : base("hshare", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        _o = options;
        if (_o.QueryShare < 1) throw new ArgumentException($"HShare's query sharing must be at least 1 step, got {_o.QueryShare}.");
        if (_o.LayerShare < 1) throw new ArgumentException($"HShare's layer sharing must be at least 1 layer, got {_o.LayerShare}.");
        if (_o.DenseLayers < 0 || _o.DenseLayers > Layers) throw new ArgumentException($"HShare dense layers must be in [0, {Layers}], got {_o.DenseLayers}.");
        int queryLength = granularity == SelectionGranularity.QueryHead ? config.HeadDim : config.HeadDim * config.GroupSize;
        _state = PrhsPlan.NewState(Layout, MaxKeep, queryLength);
        _domain = Layout.Scores("domain-scores", MaxContext);
        _selected = Layout.Indices("selected", MaxKeep);
    }

    public Options Settings => _o;
    public PrhsState State => _state;

    /// <summary>Whether a layer computes its own selection (else it reuses the last selecting layer's of this step).</summary>
    public bool Selects(int layer) => layer >= _o.DenseLayers && (layer - _o.DenseLayers) % _o.LayerShare == 0;

    public override IndexSet? Layer(ISelectionOps ops, int layer)
    {
        if (layer < _o.DenseLayers) return null;
        if (!Selects(layer)) return _selected;
        var rule = new PrhsRule(_o.Sinks, _o.Local, float.NegativeInfinity, _o.QueryShare, Radius: 0, Top: 0, Prune: 0, Freeze: 0,
            FreezeFromPrevious: false);
        ops.PrhsShare(_state, rule, Budget);
        ops.ScoreRange(_state.DomainStart, _state.DomainLength, _domain);
        ops.PrhsPick(_domain, _state, rule, Budget, _selected);
        return _selected;
    }
}
