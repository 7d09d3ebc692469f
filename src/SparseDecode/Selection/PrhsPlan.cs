using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>PrHS, Pre-hoc Sparsity (Gao et al., 2026), as the paper defines it: each head's critical set is the
/// sinks, a salient set and the local window, and the salient set is chosen before attention by three pre-hoc
/// selectors that bound the dropped mass by construction — nothing is verified after.
/// <list type="bullet">
/// <item>CIS (time): a retrieved salient set (top-k plus the ±radius neighbours of its `top` best positions) is
/// shared by the following steps while the query's cosine to the retrieval step's stays ≥ τ, for at most `block`
/// steps.</item>
/// <item>PSAW (recency): from layer `from` on, a retrieval ignores the oldest ⌊(1 − φ^(α(ℓ−ℓs)/(N−ℓs)))·t⌋
/// positions (sinks excepted): deeper layers look at a narrower recent window.</item>
/// <item>ETF (depth): from layer `from` on, the salient positions below ⌊(1 − ψ^(γ(ℓ−ℓs)/(N−ℓs)))·t⌋ are frozen:
/// taken from the previous layer's set, not retrieved again.</item>
/// </list>
/// Per layer: the sharing decision and retrieval domain, the domain's scores (heads that share score nothing), the
/// pick and the composed set.</summary>
public sealed class PrhsPlan : SelectionPlan
{
    /// <summary>The three selectors' settings.</summary>
    public sealed record Options
    {
        public required int Sinks { get; init; }
        public required int Local { get; init; }
        /// <summary>CIS: query cosine at or above which a retrieved set is shared.</summary>
        public required float Tau { get; init; }
        /// <summary>CIS: most steps one retrieval is shared over (the cluster block).</summary>
        public required int Block { get; init; }
        /// <summary>CIS: dilation radius around each of the `Top` best retrieved positions.</summary>
        public required int Radius { get; init; }
        public required int Top { get; init; }
        /// <summary>Leading layers attending densely.</summary>
        public required int DenseLayers { get; init; }
        /// <summary>ℓs, the first layer PSAW and ETF act on.</summary>
        public required int From { get; init; }
        public required double Phi { get; init; }
        public required double Alpha { get; init; }
        public required double Psi { get; init; }
        public required double Gamma { get; init; }
    }

    private readonly Options _o;
    private readonly double[] _prune, _freeze;
    private readonly PrhsState _state;
    private readonly ScoreSet _domain;
    private readonly IndexSet _selected;

    public PrhsPlan(ModelConfig config, Budget budget, Options options, SelectionGranularity granularity, int maxContext = 0)
        : base("prhs", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        _o = options;
        if (DenseLayers < 0 || DenseLayers > Layers) throw new ArgumentException($"PrHS dense layers must be in [0, {Layers}], got {DenseLayers}.");
        if (From < 0 || From > Layers) throw new ArgumentException($"PrHS 'from' layer must be in [0, {Layers}], got {From}.");
        (_prune, _freeze) = (Schedule(_o.Phi, _o.Alpha, From, Layers), Schedule(_o.Psi, _o.Gamma, From, Layers));
        int queryLength = granularity == SelectionGranularity.QueryHead ? config.HeadDim : config.HeadDim * config.GroupSize;
        _state = NewState(Layout, MaxKeep, queryLength);
        _domain = Layout.Scores("domain-scores", MaxContext);
        _selected = Layout.Indices("selected", MaxKeep);
    }

    /// <summary>Declares PrHS's buffers (<see cref="PrhsState"/>) in a layout: sets of up to `keep` positions.</summary>
    public static PrhsState NewState(PlanLayout layout, int keep, int queryLength) => new(
        layout.Indices("salient", keep, perLayer: true),
        layout.Flags("retrieved-at", perLayer: true),
        layout.Scores("reference-query", queryLength, perLayer: true),
        layout.Flags("decision"),
        layout.Flags("domain-start"),
        layout.Flags("domain-length"),
        layout.Flags("frozen-from"),
        layout.Flags("frozen-count"));

    /// <summary>PSAW's and ETF's share per layer: 1 − base^(exponent·(ℓ − from)/(layers − from)) from `from` on, else 0.</summary>
    public static double[] Schedule(double @base, double exponent, int from, int layers)
    {
        var share = new double[layers];
        for (int l = from; l < layers; l++)
        {
            double depth = (double)(l - from) / (layers - from);
            share[l] = 1 - Math.Pow(@base, exponent * depth);
        }
        return share;
    }

    public Options Settings => _o;
    public int DenseLayers => _o.DenseLayers;
    public int From => _o.From;
    public PrhsState State => _state;

    /// <summary>Oldest positions PSAW leaves out of a retrieval at this layer for a context of n.</summary>
    public int PrunedPrefix(int layer, int n) => (int)Math.Floor(_prune[layer] * n);

    /// <summary>Positions below which ETF takes the previous layer's salient set at this layer.</summary>
    public int FrozenPrefix(int layer, int n) => (int)Math.Floor(_freeze[layer] * n);

    public PrhsRule RuleAt(int layer) => new(_o.Sinks, _o.Local, _o.Tau, _o.Block, _o.Radius, _o.Top, _prune[layer], _freeze[layer],
        layer >= From && layer - 1 >= DenseLayers);

    public override IndexSet? Layer(ISelectionOps ops, int layer)
    {
        if (layer < DenseLayers) return null;
        var rule = RuleAt(layer);
        ops.PrhsShare(_state, rule, Budget);
        ops.ScoreRange(_state.DomainStart, _state.DomainLength, _domain);
        ops.PrhsPick(_domain, _state, rule, Budget, _selected);
        return _selected;
    }
}
