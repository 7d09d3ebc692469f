using System.Text;
using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>A sparse-attention method as the user names it: method, budget, granularity and method parameters,
/// validated once (<see cref="Parse"/>) and turned into the method's plan for any model (<see cref="CreatePlan"/>).
/// Layer-number defaults are scaled to the model's depth at creation.</summary>
public sealed record SelectorSpec(string Method, Budget Budget, SelectionGranularity? Granularity, IReadOnlyDictionary<string, string> Parameters)
{
    /// <summary>The method names, in the order of <see cref="MethodCatalog"/>.</summary>
    public static IReadOnlyList<string> Methods { get; } = MethodCatalog.All.Select(m => m.Name).ToArray();

    /// <summary>Full attention: engines run it without a selector (their dense fast path).</summary>
    public bool IsDense => Method == "dense";

    /// <summary>A bad method, budget or parameter: one sentence, and the field it is about ("method", "budget" or
    /// "params.NAME") so that the server can name it in its error object.</summary>
    public sealed class SpecException(string message, string field) : ArgumentException(message)
    {
        public string Field { get; } = field;
    }

    /// <summary>Validates a method, budget ("256" or "3%") and parameters; throws <see cref="SpecException"/> with
    /// one clear sentence for an unknown method or parameter or a bad value.</summary>
    public static SelectorSpec Parse(string method, string budget, IReadOnlyDictionary<string, string> parameters)
    {
        var definition = FindMethod(method);
        var b = ParseBudget(budget ?? "");
        var clean = CheckParameters(definition, parameters, out var granularity);
        return new SelectorSpec(definition.Name, b, granularity, clean);
    }

    /// <summary><see cref="Parse"/> of a method written with its parameters inline, as the benchmarks take them:
    /// "lfps" or "lfps:granularity=kv;radius=0" (name=value pairs after a colon, ';'-separated).</summary>
    public static SelectorSpec ParseInline(string text, string budget)
    {
        var parts = (text ?? "").Split(':', 2);
        var parameters = new Dictionary<string, string>();
        if (parts.Length == 2)
            foreach (var p in parts[1].Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                var kv = p.Split('=', 2);
                if (kv.Length != 2) throw new SpecException($"Method parameters take name=value, got '{p}' in '{text}'.", "method");
                parameters[kv[0]] = kv[1];
            }
        return Parse(parts[0], budget, parameters);
    }

    /// <summary>Validates a method and its parameters alone (settings stored for a model, which have no budget): the
    /// checks and sentences of <see cref="Parse"/>.</summary>
    internal static void CheckParameters(string method, IReadOnlyDictionary<string, string> parameters) =>
        CheckParameters(FindMethod(method), parameters, out _);

    private static MethodDefinition FindMethod(string method) =>
        MethodCatalog.Find((method ?? "").Trim().ToLowerInvariant())
            ?? throw new SpecException($"Unknown method '{method}'; choose one of {string.Join(", ", Methods)}.", "method");

    /// <summary>The parameters with lower-case names and trimmed values, granularity apart.</summary>
    private static Dictionary<string, string> CheckParameters(MethodDefinition definition, IReadOnlyDictionary<string, string> parameters,
        out SelectionGranularity? granularity)
    {
        string m = definition.Name;
        var clean = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        granularity = null;
        foreach (var (rawName, rawValue) in parameters)
        {
            string name = rawName.Trim().ToLowerInvariant(), value = (rawValue ?? "").Trim();
            if (name == MethodCatalog.GranularityName)
            {
                granularity = ParseGranularity(value)
                    ?? throw new SpecException($"Parameter '{name}' of method '{m}' must be 'query' or 'kv', got '{rawValue}'.", "params." + name);
                continue;
            }
            var p = definition.Find(name);
            if (p is null)
            {
                string known = string.Join(", ", definition.Parameters.Select(x => x.Name).Append(MethodCatalog.GranularityName));
                throw new SpecException($"Method '{m}' has no parameter '{rawName}'; its parameters are {known}.", "params." + rawName);
            }
            if (p.Expected(value) is string expected)
                throw new SpecException($"Parameter '{name}' of method '{m}' must be {expected}, got '{rawValue}'.", "params." + name);
            clean[name] = value;
        }
        return clean;
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

    /// <summary>Refuses integer parameters above their ceiling on this model (<see cref="ParameterCeiling"/>: a layer
    /// number at most the depth, a count of positions or steps at most the context, history and radius their fixed
    /// ceilings), before any plan allocates its state.</summary>
    public void CheckLimits(ModelConfig config)
    {
        var definition = MethodCatalog.Get(Method);
        foreach (var (name, value) in Parameters)
        {
            if (definition.Find(name)?.AboveCeiling(value, config) is (int v, int max, string why))
                throw new SpecException($"Parameter '{name}' of method '{Method}' must be at most {max} ({why}), got {v}.", "params." + name);
        }
    }

    /// <summary>The granularity the selector will use: the one given, else the method's paper default.</summary>
    public SelectionGranularity EffectiveGranularity => Granularity ?? MethodCatalog.Get(Method).DefaultGranularity;

    /// <summary>The method as a plan whose buffers are declared for contexts up to `maxContext`: what an engine's
    /// sequence decodes through (<see cref="Engine.IInferenceEngine.CreateSequence"/>). One plan serves any number
    /// of sequences; each keeps its own state.</summary>
    public SelectionPlan CreatePlan(ModelConfig config, int maxContext)
    {
        CheckLimits(config);
        var definition = MethodCatalog.Get(Method);
        return definition.Create(definition.Resolve(Parameters, config.NumLayers), config, Budget, EffectiveGranularity, maxContext);
    }

    /// <summary>The methods and their parameters, for --help.</summary>
    public static string Describe()
    {
        var sb = new StringBuilder();
        sb.AppendLine("Methods (--method) and their parameters (--param name=value); every method also takes");
        sb.AppendLine($"  {MethodCatalog.GranularityName}={{query|kv}}: {MethodCatalog.GranularityHelp}.");
        foreach (var m in MethodCatalog.All)
        {
            sb.AppendLine();
            sb.AppendLine($"{m.Name}: {m.Summary}. Default granularity: {(m.DefaultGranularity == SelectionGranularity.QueryHead ? "query" : "kv")}.");
            int w = m.Parameters.Count == 0 ? 0 : m.Parameters.Max(p => p.Name.Length);
            foreach (var p in m.Parameters)
                sb.AppendLine($"  {p.Name.PadRight(w)}  {p.Help} (default {p.Default.Text})");
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
