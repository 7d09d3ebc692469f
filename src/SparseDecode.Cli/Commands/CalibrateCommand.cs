using System.CommandLine;
using System.Globalization;
using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Tokenization;
using SparseDecode.Cpu;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`calibrate`: chooses a method's model-dependent setting on calibration prompts (never the evaluation's)
/// and stores it beside the checkpoint in sparse_methods.json, which every command then uses by default.</summary>
internal static class CalibrateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var method = new Option<string>("--method") { Description = "Method to calibrate: tidal (its re-selection layer), prhs (its early-token freezing ψ, or --parameter phi) or lfps (history and radius, at most 12% of the context scored).", DefaultValueFactory = _ => "tidal" };
        var context = new Option<int>("--context") { Description = "Calibration prompt length in tokens (default: the model's context, at most 8192)." };
        var prompts = new Option<int>("--prompts") { Description = "Calibration prompts (passkey, multikey, multivalue, vartrack in turn).", DefaultValueFactory = _ => 4 };
        var budget = new Option<string>("--budget") { Description = "Budget the setting is chosen for.", DefaultValueFactory = _ => "2%" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print the sweep without writing sparse_methods.json." };
        var parameter = new Option<string?>("--parameter") { Description = "The setting to sweep (prhs: psi, the default, or phi); the model's other stored settings hold meanwhile." };
        var speculate = new Option<bool>("--speculate")
        {
            Description = "Choose the draft for self-speculative decoding instead: every --draft-methods method at --budget with every --draft-lengths K generates --tokens greedy tokens per prompt speculatively; " +
                          "the fastest whose output is dense decoding's on every prompt is stored, and `--speculate` without a method or K then uses it.",
        };
        var draftMethods = new Option<string>("--draft-methods") { Description = "With --speculate: the draft methods compared.", DefaultValueFactory = _ => string.Join(",", Calibration.DraftMethods) };
        var draftLengths = new Option<string>("--draft-lengths") { Description = "With --speculate: the draft lengths K compared (1 to 16).", DefaultValueFactory = _ => string.Join(",", Calibration.DraftLengths) };
        var tokens = new Option<int>("--tokens") { Description = $"With --speculate: greedy tokens generated per prompt (2 to {EvalGrid.Reserve - 1}).", DefaultValueFactory = _ => 32 };
        var cmd = new Command("calibrate", $"Choose a method's model-dependent setting on calibration prompts and store it in the model's {MethodDefaults.FileName}.")
        {
            model, method, context, prompts, budget, dryRun, parameter, speculate, draftMethods, draftLengths, tokens,
        };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            // The bundled model beside the program is the build's (or the installed tool's) copy: the next build or
            // update replaces it, and with it what calibrate wrote there.
            if (!r.GetValue(dryRun) && Path.GetFullPath(dir).StartsWith(Path.GetFullPath(AppContext.BaseDirectory), StringComparison.Ordinal))
                throw new ArgumentException($"calibrate would write {MethodDefaults.FileName} into {dir}, the bundled model's copy beside the program, which the next build or update replaces; give --model with a model directory you keep (or --dry-run).");
            bool Given(Option o) => r.GetResult(o) is { Implicit: false };
            if (!r.GetValue(speculate) && new Option[] { draftMethods, draftLengths, tokens }.FirstOrDefault(Given) is { } draftOnly)
                throw new ArgumentException($"{draftOnly.Name} applies to calibrate --speculate.");
            if (r.GetValue(speculate) && new Option[] { method, parameter }.FirstOrDefault(Given) is { } settingOnly)
                throw new ArgumentException($"calibrate --speculate compares --draft-methods; {settingOnly.Name} chooses a method's setting, a separate calibration.");
            string m = (r.GetValue(method) ?? "").Trim().ToLowerInvariant();
            string b = r.GetValue(budget)!;
            _ = Budget.Parse(b);
            int n = r.GetValue(prompts);
            if (n < 1 || n > 64) throw new ArgumentException($"--prompts must be in [1, 64], got {n}.");
            using var t = Transformer.Load(dir);
            int ctx = r.GetValue(context) is > 0 and var c ? c : Math.Min(t.Config.MaxPositions, 8192);
            if (ctx <= EvalGrid.Reserve + 64 || ctx > t.Config.MaxPositions)
                throw new ArgumentException($"--context must be in ({EvalGrid.Reserve + 64}, {t.Config.MaxPositions}], got {ctx}.");
            string heldout = HeldoutCorpus.Find(dir)
                ?? throw new FileNotFoundException($"{dir}: heldout.txt.gz is missing; the calibration prompts' haystacks are cut from the model's held-out text.");
            var tokenizer = new ModelTaskTokenizer(Tokenizer.FromDirectory(dir, t.Config), t.Config);
            var builder = new PromptBuilder(HeldoutCorpus.Load(heldout, tokenizer), tokenizer);
            if (r.GetValue(speculate))
                return Drafts(dir, new CpuEngine(t), builder, r.GetValue(draftMethods)!, r.GetValue(draftLengths)!, ctx, n, b, r.GetValue(tokens), r.GetValue(dryRun));
            string? which = r.GetValue(parameter)?.Trim().ToLowerInvariant();
            string swept = Calibration.Candidates(m, t.Config, which).Parameter;
            var sweptNames = swept.Split(',');
            var stored = MethodDefaults.Load(dir).Apply(m, new Dictionary<string, string>()).Where(p => !sweptNames.Contains(p.Key)).ToDictionary();
            var result = Calibration.Sweep(new CpuEngine(t), builder, m, ctx, n, b, s => Console.Error.WriteLine(s), which, stored);
            var ci = CultureInfo.InvariantCulture;
            Console.WriteLine($"{m} {result.Parameter}, budget {b}, {n} prompts of {ctx} tokens; chosen by the mean log-probability of the answer tokens (teacher-forced):");
            if (Calibration.MaxScoredShare(m) is double cap)
                Console.WriteLine(string.Create(ci, $"(only settings scoring at most {cap:P0} of the context per layer and head may be chosen)"));
            // A swept pair ("history,radius") has values "1;0": both written "1, 0" under "history, radius".
            static string Pair(string s) => s.Replace(",", ", ").Replace(";", ", ");
            Console.WriteLine($"| {Pair(result.Parameter)} | answer log p | attention-mass recall | keys attended per step | keys scored, share of the context |");
            Console.WriteLine("|---|---:|---:|---:|---:|");
            foreach (var x in result.Candidates)
            {
                bool over = Calibration.MaxScoredShare(m) is double max && x.ScoredShare > max;
                string mark = x.Value != result.Chosen ? over ? " (over the cap)" : ""
                    : over ? " (chosen: none is within the cap)" : " (chosen)";
                Console.WriteLine(string.Create(ci, $"| {Pair(x.Value)}{mark} | {x.AnswerLogProb:F4} | {x.MassRecall:F4} | {x.KeysRead:F0} | {x.ScoredShare:P1} |"));
            }
            if (r.GetValue(dryRun)) return 0;
            MethodDefaults.Save(dir, m, result.Settings, result.Provenance());
            Console.WriteLine($"wrote {Path.Combine(dir, MethodDefaults.FileName)}: {m} {string.Join(", ", result.Settings.Select(s => $"{s.Key}={s.Value}"))}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>`calibrate --speculate`: the draft sweep's table, and its choice written beside the model.</summary>
    private static int Drafts(string dir, CpuEngine engine, PromptBuilder builder, string methodList, string lengthList, int ctx, int prompts,
        string budget, int tokens, bool dryRun)
    {
        var ci = CultureInfo.InvariantCulture;
        var methods = methodList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x => x.ToLowerInvariant()).Distinct().ToList();
        if (methods.Count == 0) throw new ArgumentException("--draft-methods names no method.");
        foreach (string x in methods)
            if (!SelectorSpec.Methods.Contains(x) || x == "dense")
                throw new ArgumentException($"--draft-methods: '{x}' is not a sparse method; choose from {string.Join(", ", SelectorSpec.Methods.Where(y => y != "dense"))}.");
        var lengths = lengthList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x =>
            int.TryParse(x, NumberStyles.Integer, ci, out int k) && k is >= 1 and <= SpeculationOptions.MaxDraft ? k
                : throw new ArgumentException($"--draft-lengths: '{x}' is not a draft length from 1 to {SpeculationOptions.MaxDraft}.")).Distinct().ToList();
        if (lengths.Count == 0) throw new ArgumentException("--draft-lengths names no draft length.");
        var stored = MethodDefaults.Load(dir);
        var sweep = Calibration.SweepDrafts(engine, builder, methods, lengths, ctx, prompts, budget, tokens,
            x => stored.Apply(x, new Dictionary<string, string>()), s => Console.Error.WriteLine(s));
        Console.WriteLine(string.Create(ci, $"speculative drafts at budget {budget}, {prompts} prompts of {ctx} tokens, {tokens} greedy tokens each; dense decoding: {sweep.DenseTokensPerSecond:F1} tokens/s. ")
                          + "Chosen: the fastest draft whose output was dense decoding's on every prompt (tokens/s are this machine's, under its load):");
        Console.WriteLine("| draft | K | kept per pass | acceptance | tokens per pass | tokens/s | × dense | identical to dense |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var x in sweep.Candidates)
            Console.WriteLine(string.Create(ci,
                $"| {x.Method}{(x == sweep.Chosen ? " (chosen)" : "")} | {x.Draft} | {x.MeanAccepted:F2} | {x.AcceptanceRate * 100:F1}% | {x.TokensPerPass:F2} | {x.TokensPerSecond:F1} | {x.TokensPerSecond / sweep.DenseTokensPerSecond:F2} | {x.Identical}/{x.Prompts}{(x.Lossless ? "" : " NOT LOSSLESS")} |"));
        if (sweep.Candidates.Any(x => !x.Lossless))
            Console.Error.WriteLine("warning: NOT LOSSLESS: some drafts' speculative output differed from dense decoding's; they were not chosen.");
        if (dryRun) return 0;
        MethodDefaults.SaveSpeculation(dir, sweep.Choice, sweep.Provenance());
        Console.WriteLine($"wrote {Path.Combine(dir, MethodDefaults.FileName)}: speculation {sweep.Choice.Method} at {sweep.Choice.Budget}, K = {sweep.Choice.Tokens}");
        return 0;
    }
}
