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
/// pick and the composed set. The opt-in δ verification with its fallbacks is <see cref="PrhsSelector"/>.</summary>
public sealed class PrhsPlan : SelectionPlan
{
    /// <summary>The selectors' settings (the verified host policy's options extend them).</summary>
    public record Options
    {
        public int Sinks { get; init; } = 4;
        public int Local { get; init; } = 32;
        /// <summary>CIS: query cosine at or above which a retrieved set is shared.</summary>
        public float Tau { get; init; } = 0.8f;
        /// <summary>CIS: most steps one retrieval is shared over (the cluster block).</summary>
        public int Block { get; init; } = 16;
        /// <summary>CIS: dilation radius around each of the `Top` best retrieved positions.</summary>
        public int Radius { get; init; } = 1;
        public int Top { get; init; } = 16;
        /// <summary>Leading dense layers (null: 2 of 32, scaled).</summary>
        public int? DenseLayers { get; init; }
        /// <summary>ℓs, the first layer PSAW and ETF act on (null: the first sparse layer).</summary>
        public int? From { get; init; }
        public double Phi { get; init; } = 0.8;
        public double Alpha { get; init; } = 1;
        public double Psi { get; init; } = 0.4;
        public double Gamma { get; init; } = 1;
    }

    private readonly Options _o;
    private readonly double[] _prune, _freeze;
    private readonly PrhsState _state;
    private readonly ScoreSet _domain;
    private readonly IndexSet _selected;

    public PrhsPlan(ModelConfig config, Budget budget, Options? options = null,
        SelectionGranularity granularity = SelectionGranularity.QueryHead, int maxContext = 0)
        : base("prhs", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        _o = options ?? new Options();
        DenseLayers = _o.DenseLayers ?? Depth.DenseLayers(Layers);
        From = _o.From ?? DenseLayers;
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
    public int DenseLayers { get; }
    public int From { get; }
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
