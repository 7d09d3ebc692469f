using System.Collections.ObjectModel;
using System.Globalization;
using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>The sparse-attention methods, each defined once: its name, summary, paper granularity, typed
/// parameters (bounds, defaults, help) and the factory of its plan. <see cref="SelectorSpec"/> (parsing, limits,
/// plan creation, <c>sparsedecode methods</c>), the stored settings of <see cref="MethodDefaults"/>, the server and
/// calibration read it; a plan receives its settings resolved and restates none of them. Adding a method is its
/// plan file and one row here.</summary>
internal static class MethodCatalog
{
    /// <summary>The parameter every method takes besides its own: "query" or "kv".</summary>
    public const string GranularityName = "granularity";

    public const string GranularityHelp = "query (one selection per query head) or kv (one per KV head, shared by its query group)";

    // Declared before All: static initializers run in textual order.

    /// <summary>±radius expansion makes 2·radius + 1 candidates of each position: far above the papers' 1, the
    /// ceiling keeps one request's state within tens of megabytes on an 8B model.</summary>
    private static ParameterCeiling PositionalRadiusCeiling { get; } = ParameterCeiling.Fixed(64, "each position expands to 2·radius + 1 candidates");

    /// <summary>Leading dense layers as the papers keep them, 2 of 32 scaled: at least 1 and below the depth where the
    /// model has more than one layer.</summary>
    private static ParameterDefault LeadingDenseLayers { get; } =
        ParameterDefault.OfDepth("2 of 32 layers", (layers, _) => Math.Clamp(OfLlama32(2, layers), Math.Min(1, layers - 1), Math.Max(0, layers - 1)));

    /// <summary>The methods in the order users see them (--help, <c>sparsedecode methods</c>, error messages).</summary>
    public static IReadOnlyList<MethodDefinition> All { get; } =
    [
        new("dense", "full attention (the reference)", SelectionGranularity.QueryHead, [],
            (_, config, _, granularity, maxContext) => new DensePlan(config, granularity, maxContext)),

        new("oracle", "exact top-k of the true scores at every layer and step (quality ceiling; scores every key)", SelectionGranularity.QueryHead, [],
            (_, config, budget, granularity, maxContext) => new OracleTopKPlan(config, budget, granularity, maxContext)),

        new("streaming", "StreamingLLM: attention sinks plus the most recent tokens", SelectionGranularity.KvHead,
            [MethodParameter.Count("sinks", 0, 4, "first positions always kept")],
            (s, config, budget, granularity, maxContext) => new StreamingLlmPlan(config, budget, s.Int("sinks"), granularity, maxContext)),

        new("quest", "Quest: pages of largest min/max score bound, budget/page-size pages per head", SelectionGranularity.QueryHead,
            [MethodParameter.Layer("dense", LeadingDenseLayers, "leading layers attending densely")],
            (s, config, budget, granularity, maxContext) => new QuestPlan(config, budget, s.Int("dense"), granularity, maxContext)),

        new("tidal", "TidalDecode: full scores and top-k in two selection layers, positions reused by the others", SelectionGranularity.QueryHead,
            [
                MethodParameter.Layer("start", ParameterDefault.OfDepth("2 of 32 layers (≥ 1)", (layers, _) => TidalStart(layers)),
                    "token-selection layer; layers below it attend densely"),
                MethodParameter.LayerOrNone("reselect", ParameterDefault.OfDepth("13 of 32 layers", (layers, s) => TidalReselect(layers, s.Int("start"))),
                    "re-selection layer, or 'none'"),
                MethodParameter.Count("correct", 0, 0,
                    "KV-cache correction: every this many sparse steps, their tokens run again densely (0: off)"),
            ],
            (s, config, budget, granularity, maxContext) =>
                new TidalDecodePlan(config, budget, s.Int("start"), s.LayerOrNone("reselect"), granularity, maxContext, s.Int("correct"))),

        new("lfps", "LFPS: candidates from past top-k (vertical, slash, ±radius) plus sinks and recent; top-k among them", SelectionGranularity.QueryHead,
            [
                // per sequence, LFPS keeps layers × heads × history lists: 64 is far above the paper's 2
                MethodParameter.Integer("history", 1, ParameterCeiling.Fixed(64, "each step of history is kept per layer and head"), 2,
                    "past steps whose top-k feed the candidates"),
                MethodParameter.Integer("radius", 0, PositionalRadiusCeiling, 1, "positional expansion radius"),
                MethodParameter.Count("sinks", 0, 4, "first positions always candidates"),
                MethodParameter.Count("recent", 0, 16, "most recent positions always candidates"),
                MethodParameter.Count("interval", 0, 32, "steps between full refreshes (0: first step and trigger only)"),
                MethodParameter.Real("drop", 0, 1e9, 2, "refresh when the best candidate score falls this far below the last refresh's best (0: off)"),
                MethodParameter.Layer("dense", 0, "leading layers attending densely"),
            ],
            (s, config, budget, granularity, maxContext) => new LfpsPlan(config, budget, new LfpsPlan.Options
            {
                History = s.Int("history"), Radius = s.Int("radius"), Sinks = s.Int("sinks"), Recent = s.Int("recent"),
                Interval = s.Int("interval"), Drop = (float)s.Real("drop"), DenseLayers = s.Int("dense"),
            }, granularity, maxContext)),

        new("prhs", "PrHS: pre-hoc salient sets shared over time (CIS), narrowed with depth (PSAW, ETF)", SelectionGranularity.QueryHead,
            [
                MethodParameter.Count("sinks", 0, 4, "first positions always kept"),
                MethodParameter.Count("local", 0, 32, "most recent positions always kept"),
                MethodParameter.Real("tau", -1, 1, 0.8, "CIS: query cosine at or above which a retrieved set is shared"),
                MethodParameter.Count("block", 1, 16, "CIS: most steps one retrieval is shared over"),
                MethodParameter.Integer("radius", 0, PositionalRadiusCeiling, 1, "CIS: dilation radius"),
                MethodParameter.Count("top", 0, 16, "CIS: best retrieved positions that are dilated"),
                MethodParameter.Layer("dense", LeadingDenseLayers, "leading layers attending densely"),
                MethodParameter.Layer("from", ParameterDefault.OfDepth("first sparse layer", (_, s) => s.Int("dense")),
                    "ℓs, the first layer PSAW and ETF act on"),
                MethodParameter.Real("phi", 0, 1, 0.8, "PSAW: deepest layers keep a φ^α share of the context for retrieval", openMin: true),
                MethodParameter.Real("alpha", 0, 1e6, 1, "PSAW: schedule exponent"),
                MethodParameter.Real("psi", 0, 1, 0.4, "ETF: deepest layers retrieve only the newest ψ^γ share, the rest is frozen", openMin: true),
                MethodParameter.Real("gamma", 0, 1e6, 1, "ETF: schedule exponent"),
            ],
            (s, config, budget, granularity, maxContext) => new PrhsPlan(config, budget, new PrhsPlan.Options
            {
                Sinks = s.Int("sinks"), Local = s.Int("local"), Tau = (float)s.Real("tau"), Block = s.Int("block"),
                Radius = s.Int("radius"), Top = s.Int("top"), DenseLayers = s.Int("dense"), From = s.Int("from"),
                Phi = s.Real("phi"), Alpha = s.Real("alpha"), Psi = s.Real("psi"), Gamma = s.Real("gamma"),
            }, granularity, maxContext)),

        new("hshare", "HShare: critical-token indices (sinks, heavy top-k, local) shared across steps, layers and a KV head's query heads",
            SelectionGranularity.KvHead,
            [
                MethodParameter.Count("sinks", 0, 8, "first positions always kept"),
                MethodParameter.Count("local", 0, 32, "most recent positions always kept"),
                MethodParameter.Count("query", 1, 2, "decode steps one retrieval serves"),
                MethodParameter.Integer("layers", 1, ParameterCeiling.Layers, 2, "consecutive layers one selection serves"),
                MethodParameter.Layer("dense", 0, "leading layers attending densely"),
            ],
            (s, config, budget, granularity, maxContext) => new HSharePlan(config, budget, new HSharePlan.Options
            {
                Sinks = s.Int("sinks"), Local = s.Int("local"), QueryShare = s.Int("query"), LayerShare = s.Int("layers"),
                DenseLayers = s.Int("dense"),
            }, granularity, maxContext)),
    ];

    /// <summary>The method named `name` (lower case, as listed), or null.</summary>
    public static MethodDefinition? Find(string name)
    {
        foreach (var method in All)
            if (method.Name == name) return method;
        return null;
    }

    /// <summary>The method named `name`; throws for a name the catalog does not list.</summary>
    public static MethodDefinition Get(string name) =>
        Find(name) ?? throw new ArgumentException($"The catalog has no method '{name}'.", nameof(name));

    /// <summary>A layer number the papers give for 32-layer Llama, scaled to a model's depth: round(layerOf32 ·
    /// layers / 32), half away from zero.</summary>
    internal static int OfLlama32(int layerOf32, int layers) =>
        (int)Math.Round(layerOf32 * layers / 32.0, MidpointRounding.AwayFromZero);

    /// <summary>TidalDecode's public code selects at layer 2 of 32: scaled, and at least layer 1.</summary>
    private static int TidalStart(int layers) => Math.Max(1, OfLlama32(2, layers));

    /// <summary>TidalDecode's public code re-selects at layer 13 of 32: scaled, after the default selection layer, none
    /// where that is past the last layer; after a selection layer given at or past it, the next layer.</summary>
    private static double? TidalReselect(int layers, int start)
    {
        int reselect = Math.Max(TidalStart(layers) + 1, OfLlama32(13, layers));
        if (reselect >= layers) return null;
        if (reselect > start) return reselect;
        return start + 1 < layers ? start + 1 : null;
    }
}

/// <summary>One row of <see cref="MethodCatalog"/>.</summary>
/// <param name="Name">What users type (--method, the server's sparse.method): lower case.</param>
/// <param name="Summary">One line for --help.</param>
/// <param name="DefaultGranularity">What the method's paper does.</param>
/// <param name="Parameters">The method's own parameters in the order they resolve: a default may read an earlier one.</param>
/// <param name="Create">The plan from settings resolved for the model.</param>
internal sealed record MethodDefinition(string Name, string Summary, SelectionGranularity DefaultGranularity,
    IReadOnlyList<MethodParameter> Parameters, PlanConstructor Create)
{
    /// <summary>The parameter named `name` (lower case), or null.</summary>
    public MethodParameter? Find(string name)
    {
        foreach (var p in Parameters)
            if (p.Name == name) return p;
        return null;
    }

    /// <summary>Every parameter's default on a model of `layers` layers.</summary>
    public MethodSettings Defaults(int layers) => Resolve(ReadOnlyDictionary<string, string>.Empty, layers);

    /// <summary>Every parameter's value on a model of `layers` layers: the given text where there is one (already
    /// checked by <see cref="MethodParameter.Expected"/>), else the default. Read at plan construction only.</summary>
    public MethodSettings Resolve(IReadOnlyDictionary<string, string> given, int layers)
    {
        var settings = new MethodSettings(Name);
        foreach (var p in Parameters)
            settings.Set(p.Name, given.TryGetValue(p.Name, out var text) ? p.Parse(text) : p.Default.ValueOn(layers, settings));
        return settings;
    }
}

/// <summary>Makes a method's plan from its resolved settings, for a model and a context length (0: the model's).</summary>
internal delegate SelectionPlan PlanConstructor(MethodSettings settings, ModelConfig config, Budget budget,
    SelectionGranularity granularity, int maxContext);

/// <summary>What values a parameter takes.</summary>
internal enum ParameterKind
{
    /// <summary>A whole number from the minimum up to the parameter's ceiling on the model.</summary>
    Integer,
    /// <summary>A real number in [minimum, maximum] (or (minimum, maximum]).</summary>
    Real,
    /// <summary>A layer number up to the model's depth, or "none".</summary>
    LayerOrNone,
}

/// <summary>One parameter of a method: its name, kind, bounds, default and help. The lower bounds and a real's
/// range hold on any model; an integer's ceiling may depend on the model (<see cref="ParameterCeiling"/>).</summary>
internal sealed record MethodParameter(string Name, ParameterKind Kind, double Min, double Max, bool OpenMin,
    ParameterCeiling? Ceiling, ParameterDefault Default, string Help)
{
    /// <summary>A count of positions or steps: at most the model's context.</summary>
    public static MethodParameter Count(string name, int min, ParameterDefault @default, string help) =>
        Integer(name, min, ParameterCeiling.Context, @default, help);

    /// <summary>A layer number (or count of leading layers) from 0: at most the model's depth.</summary>
    public static MethodParameter Layer(string name, ParameterDefault @default, string help) =>
        Integer(name, 0, ParameterCeiling.Layers, @default, help);

    public static MethodParameter Integer(string name, int min, ParameterCeiling ceiling, ParameterDefault @default, string help) =>
        new(name, ParameterKind.Integer, min, int.MaxValue, OpenMin: false, ceiling, @default, help);

    /// <summary>One layer of the model (its index, at most the last layer), or "none".</summary>
    public static MethodParameter LayerOrNone(string name, ParameterDefault @default, string help) =>
        new(name, ParameterKind.LayerOrNone, 0, int.MaxValue, OpenMin: false, ParameterCeiling.LastLayer, @default, help);

    public static MethodParameter Real(string name, double min, double max, ParameterDefault @default, string help, bool openMin = false) =>
        new(name, ParameterKind.Real, min, max, openMin, Ceiling: null, @default, help);

    /// <summary>Null where `value` is of this parameter's kind and within its model-independent bounds; else what
    /// it must be, as the end of a sentence ("an integer ≥ 0").</summary>
    public string? Expected(string value) => Kind switch
    {
        ParameterKind.Integer => ParseInteger(value) is int i && i >= Min ? null : $"an integer ≥ {Min.ToString(CultureInfo.InvariantCulture)}",
        ParameterKind.LayerOrNone => IsNone(value) || ParseInteger(value) is >= 0 ? null : "a layer number ≥ 0 or 'none'",
        _ => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && !double.IsNaN(d)
                && (OpenMin ? d > Min : d >= Min) && d <= Max
            ? null
            : $"a number in {(OpenMin ? "(" : "[")}{Min.ToString(CultureInfo.InvariantCulture)}, {Max.ToString(CultureInfo.InvariantCulture)}]",
    };

    /// <summary>The integer `value` names where it is above the ceiling on `config` (null otherwise, and for reals
    /// and "none"), with the ceiling and why it is there.</summary>
    public (int Value, int Max, string Why)? AboveCeiling(string value, ModelConfig config)
    {
        if (Ceiling is null || ParseInteger(value) is not int v) return null;
        var (max, why) = Ceiling.On(config);
        return v > max ? (v, max, why) : null;
    }

    /// <summary>The value of a text <see cref="Expected"/> accepts; null for "none".</summary>
    public double? Parse(string value) => Kind switch
    {
        ParameterKind.Real => double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture),
        _ => IsNone(value) ? null : int.Parse(value, NumberStyles.Integer, CultureInfo.InvariantCulture),
    };

    private bool IsNone(string value) => Kind == ParameterKind.LayerOrNone && value.Equals("none", StringComparison.OrdinalIgnoreCase);

    private static int? ParseInteger(string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i) ? i : null;
}

/// <summary>The largest value an integer parameter may take on a model, and why: checked before a plan allocates
/// anything, so that a value cannot size per-sequence state beyond what the model could use.</summary>
internal sealed class ParameterCeiling
{
    private readonly Func<ModelConfig, (int Max, string Why)> _on;

    private ParameterCeiling(Func<ModelConfig, (int Max, string Why)> on) => _on = on;

    /// <summary>A count of positions or steps: at most the model's context.</summary>
    public static ParameterCeiling Context { get; } = new(c => (c.MaxPositions, $"the model's context is {c.MaxPositions} tokens"));

    /// <summary>A layer number or count of layers: at most the model's depth.</summary>
    public static ParameterCeiling Layers { get; } = new(c => (c.NumLayers, $"the model has {c.NumLayers} layers"));

    /// <summary>The index of one layer: at most the model's last.</summary>
    public static ParameterCeiling LastLayer { get; } = new(c => (c.NumLayers - 1, $"the model's layers are 0 to {c.NumLayers - 1}"));

    /// <summary>A value that multiplies per-sequence state rather than bounding a set of positions: a fixed ceiling
    /// far above the papers' values, with the reason users are told.</summary>
    public static ParameterCeiling Fixed(int max, string why) => new(_ => (max, why));

    public (int Max, string Why) On(ModelConfig config) => _on(config);
}

/// <summary>A parameter's default: a value, or a function of the model's depth and the parameters resolved before
/// it, with the text users are shown.</summary>
internal sealed class ParameterDefault
{
    private readonly Func<int, MethodSettings, double?> _value;

    private ParameterDefault(string text, Func<int, MethodSettings, double?> value) => (Text, _value) = (text, value);

    /// <summary>What --help and <c>sparsedecode methods</c> show after "default".</summary>
    public string Text { get; }

    public static ParameterDefault Of(double value) => new(value.ToString(CultureInfo.InvariantCulture), (_, _) => value);

    /// <param name="value">The default on a model of the given depth, from the settings resolved so far; null: "none".</param>
    public static ParameterDefault OfDepth(string text, Func<int, MethodSettings, double?> value) => new(text, value);

    public static implicit operator ParameterDefault(double value) => Of(value);

    public double? ValueOn(int layers, MethodSettings earlier) => _value(layers, earlier);
}

/// <summary>A method's parameters resolved for one model: what its row's factory hands the plan.</summary>
internal sealed class MethodSettings(string method)
{
    private readonly Dictionary<string, double?> _values = new(StringComparer.Ordinal);

    internal void Set(string name, double? value) => _values[name] = value;

    /// <summary>An integer parameter (a count or a layer number).</summary>
    public int Int(string name) => Value(name) is double v ? (int)v : throw new InvalidOperationException($"Parameter '{name}' of method '{method}' is 'none'.");

    public double Real(string name) => Value(name) ?? throw new InvalidOperationException($"Parameter '{name}' of method '{method}' is 'none'.");

    /// <summary>A layer number, or null for "none".</summary>
    public int? LayerOrNone(string name) => Value(name) is double v ? (int)v : null;

    private double? Value(string name) => _values.TryGetValue(name, out var v)
        ? v
        : throw new InvalidOperationException($"Method '{method}' has no parameter '{name}' resolved before this one.");
}
