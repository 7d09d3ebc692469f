using System.Globalization;
using System.Text;
using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>A sparse-attention method as the user names it: method, budget, granularity and method parameters,
/// validated once (<see cref="Parse"/>) and turned into the method's plan for any model (<see cref="CreatePlan"/>).
/// Layer-number defaults are scaled to the model's depth at creation.</summary>
public sealed record SelectorSpec(string Method, Budget Budget, SelectionGranularity? Granularity, IReadOnlyDictionary<string, string> Parameters)
{
    public static IReadOnlyList<string> Methods { get; } = ["dense", "oracle", "streaming", "quest", "tidal", "lfps", "prhs", "hshare"];

    /// <summary>Full attention: engines run it without a selector (their dense fast path).</summary>
    public bool IsDense => Method == "dense";

    private sealed record Param(string Name, string Default, string Help, Func<string, string?> Check);

    private static string? Int(string v, int min) =>
        int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i) && i >= min ? null : $"an integer ≥ {min}";

    private static string? Real(string v, double min, double max, bool openMin) =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && !double.IsNaN(d)
            && (openMin ? d > min : d >= min) && d <= max
            ? null : $"a number in {(openMin ? "(" : "[")}{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}]";

    private static string? LayerOrNone(string v) => v.Equals("none", StringComparison.OrdinalIgnoreCase) ? null : Int(v, 0) is null ? null : "a layer number ≥ 0 or 'none'";

    private static readonly Param GranularityParam = new("granularity", "", "query (one selection per query head) or kv (one per KV head, shared by its query group)",
        v => ParseGranularity(v) is null ? "'query' or 'kv'" : null);

    private static readonly Dictionary<string, (string Summary, SelectionGranularity Default, Param[] Params)> Table = new()
    {
        ["dense"] = ("full attention (the reference)", SelectionGranularity.QueryHead, []),
        ["oracle"] = ("exact top-k of the true scores at every layer and step (quality ceiling; scores every key)", SelectionGranularity.QueryHead, []),
        ["streaming"] = ("StreamingLLM: attention sinks plus the most recent tokens", SelectionGranularity.KvHead,
            [new("sinks", "4", "first positions always kept", v => Int(v, 0))]),
        ["quest"] = ("Quest: pages of largest min/max score bound, budget/page-size pages per head", SelectionGranularity.QueryHead,
            [new("dense", "2 of 32 layers", "leading layers attending densely", v => Int(v, 0))]),
        ["tidal"] = ("TidalDecode: full scores and top-k in two selection layers, positions reused by the others", SelectionGranularity.QueryHead,
            [new("start", "2 of 32 layers (≥ 1)", "token-selection layer; layers below it attend densely", v => Int(v, 0)),
             new("reselect", "13 of 32 layers", "re-selection layer, or 'none'", LayerOrNone)]),
        ["lfps"] = ("LFPS: candidates from past top-k (vertical, slash, ±radius) plus sinks and recent; top-k among them", SelectionGranularity.QueryHead,
            [new("history", "2", "past steps whose top-k feed the candidates", v => Int(v, 1)),
             new("radius", "1", "positional expansion radius", v => Int(v, 0)),
             new("sinks", "4", "first positions always candidates", v => Int(v, 0)),
             new("recent", "16", "most recent positions always candidates", v => Int(v, 0)),
             new("interval", "32", "steps between full refreshes (0: first step and trigger only)", v => Int(v, 0)),
             new("drop", "2", "refresh when the best candidate score falls this far below the last refresh's best (0: off)", v => Real(v, 0, 1e9, false)),
             new("dense", "0", "leading layers attending densely", v => Int(v, 0))]),
        ["prhs"] = ("PrHS: pre-hoc salient sets shared over time (CIS), narrowed with depth (PSAW, ETF)", SelectionGranularity.QueryHead,
            [new("sinks", "4", "first positions always kept", v => Int(v, 0)),
             new("local", "32", "most recent positions always kept", v => Int(v, 0)),
             new("tau", "0.8", "CIS: query cosine at or above which a retrieved set is shared", v => Real(v, -1, 1, false)),
             new("block", "16", "CIS: most steps one retrieval is shared over", v => Int(v, 1)),
             new("radius", "1", "CIS: dilation radius", v => Int(v, 0)),
             new("top", "16", "CIS: best retrieved positions that are dilated", v => Int(v, 0)),
             new("dense", "2 of 32 layers", "leading layers attending densely", v => Int(v, 0)),
             new("from", "first sparse layer", "ℓs, the first layer PSAW and ETF act on", v => Int(v, 0)),
             new("phi", "0.8", "PSAW: deepest layers keep a φ^α share of the context for retrieval", v => Real(v, 0, 1, true)),
             new("alpha", "1", "PSAW: schedule exponent", v => Real(v, 0, 1e6, false)),
             new("psi", "0.4", "ETF: deepest layers retrieve only the newest ψ^γ share, the rest is frozen", v => Real(v, 0, 1, true)),
             new("gamma", "1", "ETF: schedule exponent", v => Real(v, 0, 1e6, false))]),
        ["hshare"] = ("HShare: critical-token indices (sinks, heavy top-k, local) shared across steps, layers and a KV head's query heads", SelectionGranularity.KvHead,
            [new("sinks", "8", "first positions always kept", v => Int(v, 0)),
             new("local", "32", "most recent positions always kept", v => Int(v, 0)),
             new("query", "2", "decode steps one retrieval serves", v => Int(v, 1)),
             new("layers", "2", "consecutive layers one selection serves", v => Int(v, 1)),
             new("dense", "0", "leading layers attending densely", v => Int(v, 0))]),
    };

    /// <summary>A bad method, budget or parameter: one sentence, and the field it is about ("method", "budget" or
    /// "params.NAME") so that the server can name it in its error object.</summary>
    public sealed class SpecException(string message, string field) : ArgumentException(message)
    {
        public string Field { get; } = field;
    }

    /// <summary>Ceilings of the two parameters that multiply per-sequence state rather than bound a set of
    /// positions: LFPS keeps layers × heads × history lists of past top-k, and ±radius expansion makes 2·radius + 1
    /// candidates of each position. Both are far above the papers' values (2 and 1) and keep one request's
    /// selector within tens of megabytes on an 8B model.</summary>
    public const int MaxHistory = 64, MaxRadius = 64;

    /// <summary>Validates a method, budget ("256" or "3%") and parameters; throws <see cref="SpecException"/> with
    /// one clear sentence for an unknown method or parameter or a bad value.</summary>
    public static SelectorSpec Parse(string method, string budget, IReadOnlyDictionary<string, string> parameters)
    {
        string m = (method ?? "").Trim().ToLowerInvariant();
        if (!Table.TryGetValue(m, out var entry))
            throw new SpecException($"Unknown method '{method}'; choose one of {string.Join(", ", Methods)}.", "method");
        var b = ParseBudget(budget ?? "");
        var clean = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        SelectionGranularity? granularity = null;
        foreach (var (rawName, rawValue) in parameters)
        {
            string name = rawName.Trim().ToLowerInvariant(), value = (rawValue ?? "").Trim();
            var p = name == GranularityParam.Name ? GranularityParam : Array.Find(entry.Params, x => x.Name == name);
            if (p is null)
            {
                string known = string.Join(", ", entry.Params.Select(x => x.Name).Append(GranularityParam.Name));
                throw new SpecException($"Method '{m}' has no parameter '{rawName}'; its parameters are {known}.", "params." + rawName);
            }
            if (p.Check(value) is string expected)
                throw new SpecException($"Parameter '{name}' of method '{m}' must be {expected}, got '{rawValue}'.", "params." + name);
            if (p == GranularityParam) granularity = ParseGranularity(value);
            else clean[name] = value;
        }
        return new SelectorSpec(m, b, granularity, clean);
    }

    private static Budget ParseBudget(string text)
    {
        Budget b;
        try
        {
            b = Budget.Parse(text);
        }
        catch (ArgumentException e)
        {
            throw new SpecException(e.Message, "budget");
        }
        // "NaN%" passes a range test written as two comparisons; a NaN share would silently mean one token.
        if (!double.IsFinite(b.Fraction))
            throw new SpecException($"Budget '{text.Trim()}' is not a percentage in (0, 100].", "budget");
        return b;
    }

    /// <summary>The largest value an integer parameter may take on this model: a layer number at most the depth,
    /// a count of positions or steps at most the context, history and radius their fixed ceilings.</summary>
    private static (int Max, string Why) Limit(string name, ModelConfig config) => name switch
    {
        "history" => (MaxHistory, "each step of history is kept per layer and head"),
        "radius" => (MaxRadius, "each position expands to 2·radius + 1 candidates"),
        "dense" or "start" or "reselect" or "from" or "layers" => (config.NumLayers, $"the model has {config.NumLayers} layers"),
        _ => (config.MaxPositions, $"the model's context is {config.MaxPositions} tokens"),
    };

    /// <summary>Refuses integer parameters beyond <see cref="Limit"/>, before any selector allocates its state.</summary>
    public void CheckLimits(ModelConfig config)
    {
        foreach (var (name, value) in Parameters)
        {
            if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)) continue;
            var (max, why) = Limit(name, config);
            if (v > max)
                throw new SpecException($"Parameter '{name}' of method '{Method}' must be at most {max} ({why}), got {v}.", "params." + name);
        }
    }

    /// <summary>The granularity the selector will use: the one given, else the method's paper default.</summary>
    public SelectionGranularity EffectiveGranularity => Granularity ?? Table[Method].Default;

    /// <summary>The method as a plan whose buffers are declared for contexts up to `maxContext`: what an engine's
    /// sequence decodes through (<see cref="Engine.IInferenceEngine.CreateSequence"/>). One plan serves any number
    /// of sequences; each keeps its own state.</summary>
    public SelectionPlan CreatePlan(ModelConfig config, int maxContext)
    {
        CheckLimits(config);
        var g = EffectiveGranularity;
        int layers = config.NumLayers;
        switch (Method)
        {
            case "dense": return new DensePlan(config, g, maxContext);
            case "oracle": return new OracleTopKPlan(config, Budget, g, maxContext);
            case "streaming": return new StreamingLlmPlan(config, Budget, I("sinks", StreamingLlmPlan.DefaultSinks), g, maxContext);
            case "quest": return new QuestPlan(config, Budget, Layer("dense", Depth.DenseLayers(layers), layers), g, maxContext);
            case "tidal":
            {
                var (start, reselect) = TidalDecodePlan.DefaultLayers(layers);
                if (Parameters.ContainsKey("start")) start = I("start", start);
                if (Parameters.TryGetValue("reselect", out var r))
                    reselect = r.Equals("none", StringComparison.OrdinalIgnoreCase) ? null : int.Parse(r, CultureInfo.InvariantCulture);
                else if (reselect is int dr && dr <= start) reselect = start + 1 < layers ? start + 1 : null;
                return new TidalDecodePlan(config, Budget, start, reselect, g, maxContext);
            }
            case "lfps":
                return new LfpsPlan(config, Budget, new LfpsPlan.Options
                {
                    History = I("history", 2), Radius = I("radius", 1), Sinks = I("sinks", 4), Recent = I("recent", 16),
                    Interval = I("interval", 32), Drop = (float)D("drop", 2), DenseLayers = Layer("dense", 0, layers),
                }, g, maxContext);
            case "prhs":
                return new PrhsPlan(config, Budget, new PrhsPlan.Options
                {
                    Sinks = I("sinks", 4), Local = I("local", 32), Tau = (float)D("tau", 0.8), Block = I("block", 16),
                    Radius = I("radius", 1), Top = I("top", 16),
                    DenseLayers = Parameters.ContainsKey("dense") ? Layer("dense", 0, layers) : null,
                    From = Parameters.ContainsKey("from") ? Layer("from", 0, layers) : null,
                    Phi = D("phi", 0.8), Alpha = D("alpha", 1), Psi = D("psi", 0.4), Gamma = D("gamma", 1),
                }, g, maxContext);
            case "hshare":
                return new HSharePlan(config, Budget, new HSharePlan.Options
                {
                    Sinks = I("sinks", 8), Local = I("local", 32), QueryShare = I("query", 2), LayerShare = I("layers", 2),
                    DenseLayers = Layer("dense", 0, layers),
                }, g, maxContext);
            default: throw new InvalidOperationException($"Method '{Method}' has no factory.");
        }
    }

    private int I(string name, int fallback) => Parameters.TryGetValue(name, out var v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
    private double D(string name, double fallback) => Parameters.TryGetValue(name, out var v) ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;

    private int Layer(string name, int fallback, int layers)
    {
        int l = I(name, fallback);
        if (l > layers) throw new ArgumentException($"Parameter '{name}' of method '{Method}' is {l} but the model has {layers} layers.");
        return l;
    }

    /// <summary>The methods and their parameters, for --help.</summary>
    public static string Describe()
    {
        var sb = new StringBuilder();
        sb.AppendLine("Methods (--method) and their parameters (--param name=value); every method also takes");
        sb.AppendLine($"  granularity={{query|kv}}: {GranularityParam.Help}.");
        foreach (string m in Methods)
        {
            var (summary, g, ps) = Table[m];
            sb.AppendLine();
            sb.AppendLine($"{m}: {summary}. Default granularity: {(g == SelectionGranularity.QueryHead ? "query" : "kv")}.");
            int w = ps.Length == 0 ? 0 : ps.Max(p => p.Name.Length);
            foreach (var p in ps)
                sb.AppendLine($"  {p.Name.PadRight(w)}  {p.Help} (default {p.Default})");
        }
        return sb.ToString();
    }

    public override string ToString()
    {
        var sb = new StringBuilder(Method).Append(" budget=").Append(Budget);
        if (Granularity is SelectionGranularity g) sb.Append(" granularity=").Append(g == SelectionGranularity.QueryHead ? "query" : "kv");
        foreach (var (k, v) in Parameters.OrderBy(kv => kv.Key, StringComparer.Ordinal)) sb.Append(' ').Append(k).Append('=').Append(v);
        return sb.ToString();
    }

    private static SelectionGranularity? ParseGranularity(string v) => v.ToLowerInvariant() switch
    {
        "query" or "queryhead" or "q" => SelectionGranularity.QueryHead,
        "kv" or "kvhead" => SelectionGranularity.KvHead,
        _ => null,
    };
}
