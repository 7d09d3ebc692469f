using System.Globalization;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Evaluation;

/// <summary>One (method, budget) pair the grid decodes each sample with. Dense attention has no budget ("-").</summary>
public readonly record struct MethodBudget(string Method, string Budget)
{
    public const string NoBudget = "-";
    public bool IsDense => Budget == NoBudget;
    public override string ToString() => IsDense ? Method : $"{Method}@{Budget}";
}

/// <summary>The evaluation grid: methods × budgets × context lengths × tasks × samples, and how each cell decodes.
/// A context of L positions holds the prompt and the decoded tokens: prompts are L − <see cref="Reserve"/> tokens.</summary>
public sealed record EvalGrid
{
    /// <summary>Positions kept free after the prompt for the decoded tokens.</summary>
    public const int Reserve = 64;
    public const string DenseMethod = "dense";

    public required IReadOnlyList<string> Methods { get; init; }
    public required IReadOnlyList<string> Budgets { get; init; }
    public required IReadOnlyList<int> Contexts { get; init; }
    public required IReadOnlyList<string> Tasks { get; init; }
    public required int Samples { get; init; }
    public int Seed { get; init; } = 1;
    public IReadOnlyDictionary<string, string> Parameters { get; init; } = new Dictionary<string, string>();
    public DType CacheType { get; init; } = DType.F32;
    /// <summary>The engine the cells run on: "cpu", or "cuda" (part of a cell's key, so the two never mix).</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>Decode steps every method runs un-observed per sample (at least; longer answers run longer); their
    /// median time is the step time.</summary>
    public int TimingSteps { get; init; } = 16;
    /// <summary>Decode steps the observer measures per cell (fidelity costs a dense attention beside the method).</summary>
    public int FidelitySteps { get; init; } = 16;
    /// <summary>Tokens of held-out code each method is teacher-forced through for perplexity.</summary>
    public int PerplexityTokens { get; init; } = 32;
    /// <summary>Tokens a needle answer may run past the expected answer's length before generation stops.</summary>
    public int AnswerSlack { get; init; } = 8;
    /// <summary>The lossless column (`eval --speculate K`): every sparse cell of a needle task also decodes its
    /// sample by self-speculative decoding — the cell's method drafting, dense attention verifying — and records
    /// whether the answer's tokens are dense decoding's and how many drafts were kept. Null: not run.</summary>
    public SpeculationOptions? Speculation { get; init; }

    /// <summary>Whether the pair's cell of `task` carries the lossless column: a sparse method (dense has nothing to
    /// draft with) on a needle task (perplexity is teacher-forced, so nothing is generated to compare).</summary>
    public bool Speculates(string task, MethodBudget pair) => Speculation is not null && !pair.IsDense && task != RulerTasks.Perplexity;

    public int PromptLength(int context) => context - Reserve;

    /// <summary>Needle depth of sample i: the midpoints of n equal slices of the haystack (train.py's evaluation used
    /// 0.05, 0.15, … 0.95 for ten samples); the needles then lie within 10% of the haystack from there.</summary>
    public double DepthOf(int sample) => (sample + 0.5) / Samples;

    public int SampleSeed(string task, int context, int sample) => RandomExtensions.StableSeed(Seed, task, context, sample);

    /// <summary>The (method, budget) pairs each sample is decoded with: dense once, every other method per budget.</summary>
    public IReadOnlyList<MethodBudget> Pairs
    {
        get
        {
            var list = new List<MethodBudget>();
            foreach (string m in Methods)
            {
                if (m == DenseMethod) list.Add(new(m, MethodBudget.NoBudget));
                else foreach (string b in Budgets) list.Add(new(m, b));
            }
            return list;
        }
    }

    public string ParameterText => string.Join(",", Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));

    /// <summary>The parameters one method gets: "method.name=value" entries for that method, and unscoped
    /// "name=value" entries for every method that has such a parameter.</summary>
    public IReadOnlyDictionary<string, string> ParametersFor(string method)
    {
        var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in Parameters)
        {
            int dot = key.IndexOf('.');
            if (dot > 0)
            {
                if (key[..dot].Equals(method, StringComparison.OrdinalIgnoreCase)) d[key[(dot + 1)..]] = value;
            }
            else if (Accepts(method, key, value)) d[key] = value;
        }
        return d;
    }

    private static bool Accepts(string method, string name, string value)
    {
        try
        {
            SelectorSpec.Parse(method, "1", new Dictionary<string, string> { [name] = value });
            return true;
        }
        catch (ArgumentException e) when (e.Message.Contains("has no parameter", StringComparison.Ordinal))
        {
            return false;
        }
    }

    private string ParameterTextFor(string method) =>
        string.Join(",", ParametersFor(method).OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));

    /// <summary>The pair's plan for contexts up to `maxContext`, or null for dense (the engine's own dense attention).</summary>
    public SelectionPlan? CreatePlan(MethodBudget pair, ModelConfig config, int maxContext) =>
        pair.IsDense ? null : SelectorSpec.Parse(pair.Method, pair.Budget, ParametersFor(pair.Method)).CreatePlan(config, maxContext);

    /// <summary>The cell's key in the result store: everything that changes its outcome. The lossless column adds
    /// "|specK" to the cells that carry it, so the keys of cells without it are those stored before it existed.</summary>
    public string Key(string model, string task, int context, int sample, MethodBudget pair) => string.Create(CultureInfo.InvariantCulture,
        $"{model}{(Device == "cpu" ? "" : "@" + Device)}|{task}|ctx{context}{(task == RulerTasks.Perplexity ? $"of{Contexts.Max()}" : "")}|s{sample}|seed{Seed}|{pair.Method}|{pair.Budget}|{CacheType.Name()}|t{TimingSteps}f{FidelitySteps}p{PerplexityTokens}a{AnswerSlack}|{(pair.IsDense ? "" : ParameterTextFor(pair.Method))}{(Speculates(task, pair) ? $"|spec{Speculation}" : "")}");

    public int CellCount => Contexts.Count * Tasks.Count * Samples * Pairs.Count;

    /// <summary>Refuses a grid that cannot run on a model of `maxPositions` positions, with one sentence.</summary>
    public void Validate(ModelConfig config) => Validate(config.MaxPositions, SelectorSpec.Methods, config);

    public void Validate(int maxPositions, IReadOnlyCollection<string> knownMethods, ModelConfig? config = null)
    {
        if (Methods.Count == 0) throw new ArgumentException("No methods were given.");
        foreach (string m in Methods)
            if (!knownMethods.Contains(m))
                throw new ArgumentException($"Unknown method '{m}'; choose from {string.Join(", ", knownMethods)}.");
        foreach (string t in Tasks)
            if (!RulerTasks.All.Contains(t))
                throw new ArgumentException($"Unknown task '{t}'; choose from {string.Join(", ", RulerTasks.All)}.");
        if (Tasks.Count == 0) throw new ArgumentException("No tasks were given.");
        if (Contexts.Count == 0) throw new ArgumentException("No context lengths were given.");
        if (Samples < 1) throw new ArgumentException($"--samples must be at least 1, got {Samples}.");
        if (TimingSteps < 2 || FidelitySteps < 1 || PerplexityTokens < 2)
            throw new ArgumentException("Timing steps must be ≥ 2, fidelity steps ≥ 1 and perplexity tokens ≥ 2.");
        if (Math.Max(TimingSteps, PerplexityTokens) + 1 > Reserve)
            throw new ArgumentException($"Timing steps and perplexity tokens must stay below {Reserve}, the positions kept free for decoding.");
        foreach (int c in Contexts)
        {
            if (c > maxPositions)
                throw new ArgumentException($"Context {c} is longer than the model's maximum of {maxPositions} tokens.");
            if (c < 512)
                throw new ArgumentException($"Context {c} is too short: contexts must be at least 512 tokens (the prompt is the context minus {Reserve}).");
        }
        bool anySparse = Methods.Any(m => m != DenseMethod);
        if (anySparse && Budgets.Count == 0) throw new ArgumentException("No budgets were given.");
        if (Speculation is not null)
        {
            Speculation.Validate();
            if (!anySparse)
                throw new ArgumentException("--speculate drafts with the grid's sparse methods; with --methods dense alone there is nothing to draft.");
            if (Tasks.All(t => t == RulerTasks.Perplexity))
                throw new ArgumentException("--speculate compares generated answers with dense decoding's, and ppl generates none (it is teacher-forced): add a needle task.");
        }
        int shortest = PromptLength(Contexts.Min());
        foreach (string b in Budgets)
        {
            var budget = Budget.Parse(b);
            if (budget.Fraction >= 1)
                throw new ArgumentException($"Budget {b} is the whole context: a sparse budget must be below 100%.");
            if (budget.Fraction == 0 && budget.Tokens >= shortest)
                throw new ArgumentException($"Budget {b} tokens is not below the shortest prompt ({shortest} tokens at context {Contexts.Min()}): a sparse budget must be smaller than the context.");
        }
        foreach (var (key, _) in Parameters)
        {
            int dot = key.IndexOf('.');
            if (dot > 0 && !Methods.Contains(key[..dot].ToLowerInvariant()))
                throw new ArgumentException($"Parameter '{key}' is scoped to method '{key[..dot]}', which is not in the grid.");
            if (dot <= 0 && !Methods.Any(m => m != DenseMethod && ParametersFor(m).ContainsKey(key)))
                throw new ArgumentException($"No method in the grid has a parameter '{key}'; scope it as method.{key}=value or see docs/methods.md.");
        }
        // every plan must build for this model: bad parameter values and impossible layer numbers stop here
        if (config is not null)
            foreach (var pair in Pairs) CreatePlan(pair, config, config.MaxPositions);
    }
}
