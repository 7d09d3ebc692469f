using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Server.Protocol;

namespace SparseDecode.Server.Hosting;

/// <summary>Makes each request's plan from its `sparse` field, falling back member by member to the server's
/// --method, --budget and --param (null: dense attention). A plan holds no per-sequence state (the engine's
/// sequence keeps it), so requests of one setting get the same plan object: the GPU engine runs the sequences of one
/// plan as rows of one group in its batched step.</summary>
public sealed class PlanFactory
{
    private readonly string _method;
    private readonly string _budget;
    private readonly IReadOnlyDictionary<string, string> _params;
    private readonly ModelConfig _config;
    private readonly int _maxContext;
    private readonly MethodDefaults _stored;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, SelectionPlan> _plans = new(StringComparer.Ordinal);

    /// <summary>Distinct settings whose plans are kept for reuse; a request with another one gets a plan of its own.</summary>
    public const int MaxKeptPlans = 64;

    /// <param name="stored">Settings stored beside the model (sparse_methods.json): under every request's own.</param>
    /// <param name="maxContext">The longest sequence the engine holds: what each plan's buffers are declared for.</param>
    public PlanFactory(ServerOptions options, ModelConfig config, int maxContext, MethodDefaults? stored = null)
    {
        _method = options.Method;
        _budget = options.Budget;
        _params = options.Params;
        _config = config;
        _maxContext = maxContext;
        _stored = stored ?? MethodDefaults.None;
        // The defaults must work: a bad --method fails at start-up with ArgumentException, not on every request; the
        // plan made to check them is the one requests with the defaults get.
        var spec = SelectorSpec.Parse(_method, _budget, _stored.Apply(_method, _params));
        var plan = spec.CreatePlan(_config, _maxContext);
        if (!spec.IsDense) _plans[spec.ToString()] = plan;
    }

    public string DefaultMethod => _method;

    public SelectionPlan? Create(SparseRequest? sparse)
    {
        string method = sparse?.Method ?? _method;
        if (!SelectorSpec.Methods.Contains(method, StringComparer.OrdinalIgnoreCase))
            throw ApiException.BadRequest($"Unknown sparse method '{method}'; this server knows {string.Join(", ", SelectorSpec.Methods)}.",
                "sparse.method", "unknown_method");
        string budget = sparse?.Budget ?? _budget;
        var parameters = sparse?.Params ?? (string.Equals(method, _method, StringComparison.OrdinalIgnoreCase)
            ? _params : new Dictionary<string, string>());
        try
        {
            var spec = SelectorSpec.Parse(method, budget, _stored.Apply(method, parameters));
            if (spec.IsDense) return null;
            string key = spec.ToString();
            if (_plans.TryGetValue(key, out var kept)) return kept;
            var plan = spec.CreatePlan(_config, _maxContext);
            return _plans.Count < MaxKeptPlans ? _plans.GetOrAdd(key, plan) : plan;
        }
        catch (SelectorSpec.SpecException e)
        {
            throw ApiException.BadRequest(e.Message, "sparse." + e.Field, "invalid_sparse");
        }
        catch (ArgumentException e)
        {
            // A plan's own constructor check (e.g. a layer pair it cannot use).
            throw ApiException.BadRequest(e.Message, "sparse", "invalid_sparse");
        }
    }
}
