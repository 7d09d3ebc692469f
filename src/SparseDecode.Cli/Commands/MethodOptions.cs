using System.CommandLine;
using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cli.Commands;

/// <summary>The sparse-attention options shared by generate, eval and serve: --method, --budget, --param, --report.</summary>
internal sealed class MethodOptions
{
    public Option<string> Method { get; } = new("--method")
    {
        Description = "Attention method: " + string.Join(", ", SelectorSpec.Methods) + ".",
        DefaultValueFactory = _ => "dense",
    };

    public Option<string> Budget { get; } = new("--budget")
    {
        Description = "Keys each head attends to per decode step: tokens (256) or a share of the context (3%).",
        DefaultValueFactory = _ => "256",
    };

    public Option<string[]> Params { get; } = new("--param")
    {
        Description = "Method parameter as name=value (repeatable), e.g. --method lfps --param sinks=8. `sparsedecode methods` lists each method's parameters and defaults.",
        AllowMultipleArgumentsPerToken = false,
    };

    public Option<bool> Report { get; } = new("--report")
    {
        Description = "Measure attention-mass recall, top-k recall, output error, keys scored and time per layer (computes dense attention beside the method).",
    };

    public Option<string?> Speculate { get; } = SpeculateOption(
        "Self-speculative decoding: draft K tokens (1 to 16, or auto) with --method, then verify them densely in one pass; the output is dense decoding's. " +
        "Without --method, or without K, the draft `calibrate --speculate` stored for the model.");

    /// <summary>--speculate [K|auto], as generate, bench and eval take it; given without a value it means the draft
    /// length `calibrate --speculate` stored for the model.</summary>
    public static Option<string?> SpeculateOption(string description) => new("--speculate") { Description = description, Arity = ArgumentArity.ZeroOrOne };

    /// <summary>--speculate as options: null without it; its value, or without one the stored draft length (refused
    /// with one sentence where the model has none).</summary>
    public static SpeculationOptions? SpeculationFrom(ParseResult r, Option<string?> option, string modelDirectory)
    {
        if (r.GetResult(option) is null) return null;
        string text = r.GetValue(option) ?? MethodDefaults.Load(modelDirectory).Speculation?.Tokens
            ?? throw new ArgumentException($"--speculate without a draft length uses the one `calibrate --speculate` stored for the model, and {Path.Combine(modelDirectory, MethodDefaults.FileName)} has none: give K (1 to {SpeculationOptions.MaxDraft}) or auto.");
        return ParseSpeculation(text);
    }

    /// <summary>--speculate's value as options; a K outside 1..16 or a word other than auto is refused with one sentence.</summary>
    public static SpeculationOptions ParseSpeculation(string text)
    {
        try
        {
            return SpeculationOptions.Parse(text);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"--speculate takes a draft length from 1 to {SpeculationOptions.MaxDraft} tokens or 'auto', not '{text}'.");
        }
    }

    public static MethodOptions Create() => new();

    /// <param name="report">Whether the command can show --report's measurements (bench times steps and has none).</param>
    /// <param name="speculate">Whether the command takes --speculate (generate and bench).</param>
    public void AddTo(Command cmd, bool report = true, bool speculate = false)
    {
        cmd.Options.Add(Method);
        cmd.Options.Add(Budget);
        cmd.Options.Add(Params);
        if (report) cmd.Options.Add(Report);
        if (speculate) cmd.Options.Add(Speculate);
    }

    /// <summary>--speculate [K] as options (null without it); refused with dense attention (unless the model has a
    /// stored draft to use instead), with --report, or with a K outside 1..16.</summary>
    public SpeculationOptions? Speculation(ParseResult r, string modelDirectory)
    {
        if (r.GetResult(Speculate) is null) return null;
        if (r.GetValue(Method)!.Equals("dense", StringComparison.OrdinalIgnoreCase) && StoredDraft(r, modelDirectory) is null)
            throw new ArgumentException("--speculate drafts with a sparse --method; with --method dense there is nothing to draft.");
        if (r.GetValue(Report))
            throw new ArgumentException("--report watches the method's own decode steps; with --speculate they are verified densely, so give one or the other.");
        return SpeculationFrom(r, Speculate, modelDirectory);
    }

    /// <summary>The draft `calibrate --speculate` stored for the model, where --speculate is given without a
    /// --method (else null): its method and budget then draft (an explicit --budget still wins).</summary>
    private MethodDefaults.Draft? StoredDraft(ParseResult r, string modelDirectory) =>
        r.GetResult(Speculate) is null || r.GetResult(Method) is { Implicit: false } ? null : MethodDefaults.Load(modelDirectory).Speculation;

    /// <summary>The method as given, on top of the settings stored beside the model (sparse_methods.json); with
    /// --speculate and no --method, the stored draft's.</summary>
    public SelectorSpec Spec(ParseResult r, string modelDirectory)
    {
        var draft = StoredDraft(r, modelDirectory);
        if (draft is null) CheckMethodGiven(r);
        string method = draft?.Method ?? r.GetValue(Method)!;
        string budget = draft is not null && r.GetResult(Budget) is not { Implicit: false } ? draft.Budget : r.GetValue(Budget)!;
        var parameters = MethodDefaults.Load(modelDirectory).Apply(method, ParseParams(r.GetValue(Params) ?? []));
        return SelectorSpec.Parse(method, budget, parameters);
    }

    /// <summary>--budget or --param without a sparse --method would be ignored (attention stays dense); refused.</summary>
    public void CheckMethodGiven(ParseResult r)
    {
        if (!r.GetValue(Method)!.Equals("dense", StringComparison.OrdinalIgnoreCase)) return;
        foreach (var option in (Option[])[Budget, Params])
            if (r.GetResult(option) is { Implicit: false })
                throw new ArgumentException($"{option.Name} applies to a sparse --method; without one, attention is dense.");
    }

    public SparsityObserver? Observer(ParseResult r) => r.GetValue(Report) ? new SparsityObserver() : null;

    public static IReadOnlyDictionary<string, string> ParseParams(string[] items)
    {
        var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string item in items)
        {
            int eq = item.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"--param '{item}' must look like name=value.");
            d[item[..eq].Trim()] = item[(eq + 1)..].Trim();
        }
        return d;
    }
}
