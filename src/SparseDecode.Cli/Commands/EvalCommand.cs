using SparseDecode.Backends;
using SparseDecode.Cli.TensorParallel;
using SparseDecode.Model;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Selection;
using SparseDecode.Tokenization;
using Spectre.Console;
using SparseDecode.Cpu;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`eval`: the RULER-style grid (methods × budgets × contexts × tasks × samples) with fidelity and speed,
/// a live progress bar, a table at the end, and results.json / results.csv / report.md with SVG plots.</summary>
public static class EvalCommand
{
    /// <summary>The --quick grid: all methods at one budget, two contexts, three tasks, two samples each —
    /// a few minutes on a 2-core machine with the bundled model.</summary>
    public static readonly int[] QuickContexts = [1024, 2048];
    public static readonly string[] QuickTasks = [RulerTasks.Passkey, RulerTasks.MultiKey, RulerTasks.VarTrack];
    public const int QuickSamples = 2;
    public const string DefaultBudget = "5%";
    /// <summary>Samples per task and context by default: 7 × 6 needle tasks × the 6 default contexts of the bundled
    /// model is 252 pairs a row, what a paired test needs to detect a 5-point difference to dense with 80% power at
    /// the discordance the 32K grid shows (docs/evaluation.md, "Paired statistics").</summary>
    public const int DefaultSamples = 7;
    public const string DefaultOut = "eval-results";

    public static Command Create()
    {
        var model = CommonOptions.Model();
        var kv = CommonOptions.CacheType();
        var methods = new Option<string>("--methods")
        {
            Description = $"Comma-separated methods to compare: {string.Join(", ", SelectorSpec.Methods)}.",
            DefaultValueFactory = _ => string.Join(",", SelectorSpec.Methods),
        };
        var budgets = new Option<string>("--budgets", "--budget")
        {
            Description = "Comma-separated budgets (keys per head per step) for the sparse methods: tokens (256) or a share of the prompt (5%). Must be below the context.",
            DefaultValueFactory = _ => DefaultBudget,
        };
        var contexts = new Option<string?>("--contexts")
        {
            Description = "Comma-separated context lengths in tokens (prompt + decoded tokens), from 512 to the model's maximum. Default: 1024, 2048, 4096, … up to the model's maximum.",
        };
        var tasks = new Option<string>("--tasks")
        {
            Description = $"Comma-separated tasks: {string.Join(", ", RulerTasks.All)} (lcc = the next line of held-out code after a long prefix of it, scored by edit similarity; ppl = perplexity of held-out code continued under each method). Default: every task but lcc.",
            DefaultValueFactory = _ => string.Join(",", RulerTasks.Default),
        };
        var samples = new Option<int>("--samples", "-n")
        {
            Description = "Samples per task and context; their needle depths are spread evenly over the haystack.",
            DefaultValueFactory = _ => DefaultSamples,
        };
        var seed = new Option<int>("--seed") { Description = "Seed the prompts are generated from.", DefaultValueFactory = _ => 1 };
        var param = new Option<string[]>("--param")
        {
            Description = "Method parameter, repeatable: name=value for every method that has it, or method.name=value for one (e.g. tidal.reselect=5). `sparsedecode methods` lists each method's parameters and defaults.",
            AllowMultipleArgumentsPerToken = false,
        };
        var output = new Option<string>("--out", "-o")
        {
            Description = "Directory for cells.jsonl (the resumable per-cell results), results.json, results.csv, report.md and the plots.",
            DefaultValueFactory = _ => DefaultOut,
        };
        var quick = new Option<bool>("--quick")
        {
            Description = $"A small grid that finishes in a few minutes on 2 cores: every method at {DefaultBudget}, contexts {string.Join(" and ", QuickContexts)}, tasks {string.Join(", ", QuickTasks)}, {QuickSamples} samples each. Options given explicitly still apply.",
        };
        var reportOnly = new Option<bool>("--report-only")
        {
            Description = "Write report.md and the plots again from results.json in --out (and heatmap.json; recorded first when missing, unless --no-heatmap) without decoding a cell.",
        };
        var json = new Option<bool>("--json") { Description = "Print the results (command, grid, one row per method and budget, step-time sweep) as JSON instead of the table." };
        var fresh = new Option<bool>("--fresh") { Description = "Ignore results already in --out and run every cell again." };
        var timing = new Option<int>("--timing-steps")
        {
            Description = "Decode steps each method runs un-observed per sample (the median step time is its speed; more for longer answers).",
            DefaultValueFactory = _ => 16,
        };
        var fidelity = new Option<int>("--fidelity-steps")
        {
            Description = "Decode steps per cell measured by the fidelity observer (mass recall, top-k recall, output error, keys scored, select/attend time).",
            DefaultValueFactory = _ => 16,
        };
        var pplTokens = new Option<int>("--ppl-tokens")
        {
            Description = $"Tokens of held-out code each method is teacher-forced through per perplexity sample (2 to {EvalGrid.Reserve - 1}); every context scores the same tokens of a sample, after more or less of the text before them.",
            DefaultValueFactory = _ => 32,
        };
        var heatLayer = new Option<int?>("--heatmap-layer") { Description = "Layer of the attention heat map. Default: the most structured head over all layers." };
        var heatHead = new Option<int?>("--heatmap-head") { Description = "Query head of the attention heat map. Default: the most structured head." };
        var noHeat = new Option<bool>("--no-heatmap") { Description = "Skip the attention-pattern heat map." };
        var noSweep = new Option<bool>("--no-speed-sweep")
        {
            Description = "Skip the step-time sweep (one dense prefill at the longest context, then every method timed at 1K, 2K, 4K, … up to it); step times then come from the grid's contexts only.",
        };

        var speculate = MethodOptions.SpeculateOption(
            "The lossless column: every sparse method's needle cells also decode their sample by self-speculative decoding, the method drafting K tokens (1 to 16, or auto; without K, the one `calibrate --speculate` stored) and dense attention verifying; " +
            "the report gives whether each answer is dense decoding's token for token, its accuracy and the draft tokens kept per pass. CPU only.");
        var device = CommonOptions.Device();
        var gpuPrefill = CommonOptions.PrefillPrecision();
        var gpuDecode = CommonOptions.DecodePrecision();
        var tensorParallel = RankLauncher.TensorParallelOption();
        var cmd = new Command("eval",
            "Evaluate sparse-attention methods on RULER-style long-context tasks (passkey, multi-key, multi-value, multi-query, variable tracking, " +
            "common words), long-code completion (lcc, on request) and held-out perplexity: accuracy, attention fidelity and decode speed per method and budget. Each sample is prefilled " +
            "once densely and every method decodes from a copy of that cache; finished cells are kept in --out, so an interrupted run resumes.")
        {
            model, methods, budgets, contexts, tasks, samples, seed, param, kv, device, gpuPrefill, gpuDecode, tensorParallel, output, quick, reportOnly, json, fresh, timing, fidelity, pplTokens, heatLayer, heatHead, noHeat, noSweep, speculate,
        };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            bool Given(Option o) => r.GetResult(o) is { Implicit: false };
            bool isQuick = r.GetValue(quick);
            var wall = Stopwatch.StartNew();
            var loadMark = MachineLoad.Start();
            if (r.GetValue(reportOnly) && new Option[] { fresh, methods, speculate }.FirstOrDefault(Given) is { } conflict)
                throw new ArgumentException($"--report-only writes the stored results again; it runs nothing, so {conflict.Name} does not apply.");
            if (r.GetValue(reportOnly))
                return Rerender(Path.GetFullPath(r.GetValue(output)!), r.GetValue(model), !r.GetValue(noHeat), r.GetValue(heatLayer), r.GetValue(heatHead), r.GetValue(json), wall);
            string dir = ModelLocator.Resolve(r.GetValue(model));
            var config = ModelConfig.Load(dir);
            string deviceName = CommonOptions.ParseDevice(r.GetValue(device)!);
            TensorParallelGate.Check(r.GetValue(tensorParallel), dir, deviceName, "eval");

            var contextList = r.GetValue(contexts) is string cs ? ParseInts(cs, "--contexts")
                : isQuick ? QuickContexts.Where(c => c <= config.MaxPositions).DefaultIfEmpty(config.MaxPositions).ToArray()
                : DefaultContexts(config.MaxPositions);
            var methodList = SplitList(r.GetValue(methods)!).Select(m => m.ToLowerInvariant()).ToList();
            var speculation = MethodOptions.SpeculationFrom(r, speculate, dir);
            // the GPU's dense pass is rows of its batched step, within rounding of its lone steps: a near-tie may flip,
            // so a token-for-token check of it would fail where nothing is wrong
            if (speculation is not null && deviceName != "cpu")
                throw new ArgumentException("eval --speculate checks that speculative answers are dense decoding's token for token, which the CPU engine's dense pass holds bit for bit (the GPU's only within the rounding of its batched step): run it with --device cpu.");
            var grid = new EvalGrid
            {
                Methods = methodList,
                Budgets = SplitList(r.GetValue(budgets)!),
                Contexts = contextList,
                Tasks = isQuick && !Given(tasks) ? QuickTasks : SplitList(r.GetValue(tasks)!).Select(t => t.ToLowerInvariant()).ToList(),
                Samples = isQuick && !Given(samples) ? QuickSamples : r.GetValue(samples),
                Seed = r.GetValue(seed),
                Parameters = WithStoredDefaults(ParseParams(r.GetValue(param) ?? []), MethodDefaults.Load(dir), methodList),
                // the GPU's cache is bf16; saying so keeps its cells' keys and the report's grid truthful
                CacheType = deviceName == "cpu" ? CommonOptions.ParseCacheType(r.GetValue(kv)!) : DType.BF16,
                Device = deviceName,
                TimingSteps = r.GetValue(timing),
                FidelitySteps = r.GetValue(fidelity),
                PerplexityTokens = r.GetValue(pplTokens),
                Speculation = speculation,
            };
            grid.Validate(config);
            // a prefilled sample and the copy one method decodes from it are held at once
            using var engine = BackendRegistry.Load(dir, CommonOptions.Engine(r, device, kv, capacity: grid.Contexts.Max(), sequences: 2, prefill: gpuPrefill, decode: gpuDecode));

            string heldout = HeldoutCorpus.Find(dir)
                ?? throw new FileNotFoundException($"{dir}: heldout.txt.gz is missing; the tasks' haystacks are cut from the model's held-out text.");
            var tokenizer = new ModelTaskTokenizer(Tokenizer.FromDirectory(dir, config), config);
            var builder = new PromptBuilder(HeldoutCorpus.Load(heldout, tokenizer), tokenizer);
            string outDir = Path.GetFullPath(r.GetValue(output)!);
            if (File.Exists(outDir)) throw new IOException($"--out {outDir} is a file; give a directory for the results.");
            var store = new ResultStore(outDir, r.GetValue(fresh));
            if (store.Skipped.Count > 0)
                Console.Error.WriteLine($"warning: {store.Path}: skipped {store.Skipped.Count} unreadable line(s) (line {store.Skipped[0].Line}: {store.Skipped[0].Reason}); their cells run again.");
            string modelName = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));

            var err = ConsoleFor(Console.Error, Console.IsErrorRedirected);
            var ci = CultureInfo.InvariantCulture;
            err.MarkupLine(Markup.Escape(string.Create(ci,
                $"eval: {modelName}, {Count(grid.CellCount, "cell")} ({Count(grid.Contexts.Count, "context")} × {Count(grid.Tasks.Count, "task")} × {Count(grid.Samples, "sample")} × {Count(grid.Pairs.Count, "method/budget pair")}), {store.Count} results on disk in {outDir}")));

            bool heat = !r.GetValue(noHeat);
            if (heat && !engine.SupportsObserver)
            {
                heat = false;
                err.MarkupLine(Markup.Escape($"eval: the attention heat map reads dense attention through the CPU engine; skipped on {engine.DeviceName} (`eval --report-only` on the CPU adds it)."));
            }
            int heatContext = grid.Contexts.Max();
            string heatPath = Path.Combine(outDir, "heatmap.json");
            HeatmapData? heatmap = heat ? ReuseHeatmap(heatPath, modelName, r.GetValue(heatLayer), r.GetValue(heatHead), heatContext) : null;
            bool sweep = !r.GetValue(noSweep);
            var sweepContexts = SpeedSweep.Contexts(grid.Contexts);
            string speedPath = Path.Combine(outDir, "speed.json");
            string speedKey = string.Join("|", modelName + (grid.Device == "cpu" ? "" : "@" + grid.Device), string.Join(",", grid.Pairs), string.Join(",", sweepContexts), grid.CacheType, grid.TimingSteps,
                grid.Seed, string.Join(",", grid.Methods.Select(m => m + ":" + string.Join(",", grid.ParametersFor(m).OrderBy(kv => kv.Key).Select(kv => kv.Key + "=" + kv.Value)))));
            IReadOnlyList<SpeedPoint>? speed = sweep ? ReuseSpeed(speedPath, speedKey) : [];
            double extra = (heat && heatmap is null ? AttentionPatternRun.EstimateSeconds(heatContext, AttentionPatternRun.DefaultSteps) : 0)
                           + (speed is null ? SpeedSweep.EstimateSeconds(sweepContexts, grid.Pairs.Count, grid.TimingSteps) : 0);

            // after the grid: the step-time sweep and the attention pattern, each kept in --out for a rerun
            void Extras(Action<string> status)
            {
                if (speed is null)
                {
                    speed = SpeedSweep.Run(engine, builder, grid, sweepContexts, p => grid.CreatePlan(p, config, engine.MaxContext), grid.TimingSteps, status);
                    File.WriteAllText(speedPath, System.Text.Json.JsonSerializer.Serialize(new SpeedSweepFile(speedKey, speed), EvalJson.Default.SpeedSweepFile));
                }
                if (heat && heatmap is null)
                {
                    status($"attention pattern: {AttentionPatternRun.DefaultSteps} dense decode steps at {heatContext}");
                    heatmap = RecordHeatmap(engine, builder, heatContext, modelName, r.GetValue(heatLayer), r.GetValue(heatHead), grid, heatPath);
                }
            }

            IReadOnlyList<CellResult> cells;
            if (err.Profile.Capabilities.Interactive)
            {
                cells = null!;
                // The live bar hides the cursor until it ends; Ctrl+C ends the process first, so show it again then.
                using var cursor = new CursorOnCancel(err);
                err.Progress()
                    .AutoClear(false)
                    // no percentage column: the bar moves by estimated time (cells differ in cost by context), the
                    // description counts cells, and a percentage beside both would be neither's share
                    .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = ProgressBarWidth },
                        new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                    .Start(ctx =>
                    {
                        var bar = ctx.AddTask("starting", maxValue: 1);
                        var progress = new Reporter(p =>
                        {
                            bar.MaxValue = Math.Max(1e-9, p.Total + extra);
                            bar.Value = p.Done;
                            // "cells done/total task @ context #sample": short enough that 80 columns keep the context label
                            bar.Description = Markup.Escape(Fit($"{p.CellsDone}/{p.CellsTotal} {p.Current}", err.Profile.Width));
                        });
                        var run = new GridRunner(engine, builder, grid, store, modelName, p => grid.CreatePlan(p, config, engine.MaxContext), s => new SparsityMeter(s))
                            { Progress = progress };
                        cells = run.Run();
                        Extras(status => bar.Description = Markup.Escape(Fit(status, err.Profile.Width)));
                        bar.Value = bar.MaxValue;
                        bar.Description = "done";
                    });
            }
            else
            {
                // redirected output: one line per sample instead of a live bar
                string last = "";
                var progress = new Reporter(p =>
                {
                    if (!p.Current.EndsWith("prefilling", StringComparison.Ordinal) && p.Current != "done") return;
                    string line = string.Create(ci, $"[{p.CellsDone}/{p.CellsTotal} cells] {p.Current}");
                    if (line != last) Console.Error.WriteLine(line);
                    last = line;
                });
                var run = new GridRunner(engine, builder, grid, store, modelName, p => grid.CreatePlan(p, config, engine.MaxContext), s => new SparsityMeter(s))
                    { Progress = progress };
                cells = run.Run();
                Extras(status =>
                {
                    if (!status.Contains(" at ", StringComparison.Ordinal) || status.StartsWith("attention", StringComparison.Ordinal)) Console.Error.WriteLine(status);
                });
            }

            var rows = EvalSummary.Summarize(cells, grid);
            var results = new EvalResultsFile
            {
                Command = CommandLine(),
                Model = modelName,
                Machine = (engine.DeviceName == "cpu" ? "" : $"{engine.DeviceName} (cuda), host ")
                          + $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, {System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription}",
                Created = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", ci),
                WallSeconds = wall.Elapsed.TotalSeconds,
                Load = MachineLoad.Since(loadMark),
                Grid = GridDescription.Of(grid),
                Summary = rows,
                Cells = cells,
                Speed = speed ?? [],
            };
            var writer = new ReportWriter(outDir);
            writer.WriteAll(results, grid, heatmap);
            Print(results, grid, r.GetValue(json));
            err.MarkupLine(Markup.Escape(string.Create(ci, $"wrote {Path.Combine(outDir, "report.md")} (+ results.json, results.csv, plots) in {wall.Elapsed.TotalSeconds:0} s")));
            return LosslessCheck(rows);
        }));
        return cmd;
    }

    /// <summary>The end of a run on stdout: the table, or with --json the results without their cells (those are in
    /// results.json and cells.jsonl).</summary>
    private static void Print(EvalResultsFile results, EvalGrid grid, bool json)
    {
        if (json)
            Console.Out.WriteLine(System.Text.Json.JsonSerializer.Serialize(results with { Cells = [] },
                new EvalJson(new System.Text.Json.JsonSerializerOptions(EvalJson.Default.Options) { WriteIndented = true }).EvalResultsFile));
        else
        {
            var console = ConsoleFor(Console.Out, Console.IsOutputRedirected);
            console.Write(EvalTable.For(results.Summary, grid, console.Profile.Width));
            console.WriteLine();
        }
        Console.Out.Flush();
    }

    /// <summary>The lossless column's verdict on stderr: its count of samples identical to dense; exit code 1 when
    /// any speculative answer differs from dense decoding's (a broken guarantee, not a measurement).</summary>
    private static int LosslessCheck(IReadOnlyList<MethodSummary> rows)
    {
        var spec = rows.Where(r => r.Lossless is not null).ToList();
        if (spec.Count == 0) return 0;
        int samples = spec.Sum(r => r.Lossless!.Samples), identical = spec.Sum(r => r.Lossless!.Identical);
        if (identical == samples)
        {
            Console.Error.WriteLine($"lossless: {identical}/{samples} speculative samples identical to dense");
            return 0;
        }
        Console.Error.WriteLine($"error: NOT LOSSLESS: {samples - identical} of {samples} speculative samples differ from dense decoding ({string.Join(", ", spec.Where(r => !r.Lossless!.IsLossless).Select(r => r.Label))}); see report.md.");
        return 1;
    }

    private const int ProgressBarWidth = 20;

    /// <summary>The progress description cut to what the line leaves beside the bar, elapsed time, ETA and spinner, so that a narrow terminal keeps the ETA instead of wrapping the line.</summary>
    public static string Fit(string description, int width)
    {
        int room = Math.Max(12, width - ProgressBarWidth - 32);
        return description.Length <= room ? description : description[..(room - 1)] + "…";
    }

    /// <summary>A console on the given writer; redirected output gets no colour codes and a wide table.</summary>
    private static IAnsiConsole ConsoleFor(TextWriter writer, bool redirected)
    {
        var c = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = redirected ? AnsiSupport.No : AnsiSupport.Detect,
            ColorSystem = redirected ? ColorSystemSupport.NoColors : ColorSystemSupport.Detect,
            Interactive = redirected ? InteractionSupport.No : InteractionSupport.Detect,
        });
        if (redirected) c.Profile.Width = 200;
        return c;
    }

    private sealed class Reporter(Action<EvalProgress> report) : IProgress<EvalProgress>
    {
        public void Report(EvalProgress value) => report(value);
    }

    /// <summary>--report-only: the stored results written out again; the model is loaded only to record a missing heat map.</summary>
    private static int Rerender(string outDir, string? model, bool heat, int? layer, int? head, bool json, Stopwatch wall)
    {
        var stored = StoredReport.Load(outDir);
        var heatmap = stored.Heatmap;
        if (heat && heatmap is null)
        {
            string dir = ModelLocator.Resolve(model);
            using var engine = CpuEngine.Load(dir, stored.Grid.CacheType);
            var tokenizer = new ModelTaskTokenizer(Tokenizer.FromDirectory(dir, engine.Config), engine.Config);
            string heldout = HeldoutCorpus.Find(dir)
                ?? throw new FileNotFoundException($"{dir}: heldout.txt.gz is missing; the heat map's prompt is cut from the model's held-out text.");
            var builder = new PromptBuilder(HeldoutCorpus.Load(heldout, tokenizer), tokenizer);
            Console.Error.WriteLine($"attention pattern: {AttentionPatternRun.DefaultSteps} dense decode steps at {stored.Grid.Contexts.Max()}");
            heatmap = RecordHeatmap(engine, builder, stored.Grid.Contexts.Max(), stored.Results.Model, layer, head, stored.Grid, Path.Combine(outDir, "heatmap.json"));
        }
        new ReportWriter(outDir).WriteAll(stored.Results, stored.Grid, heatmap);
        Print(stored.Results, stored.Grid, json);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {Path.Combine(outDir, "report.md")} (+ results.json, results.csv, plots) from the stored results in {wall.Elapsed.TotalSeconds:0} s"));
        return LosslessCheck(stored.Results.Summary);
    }

    private static IReadOnlyList<SpeedPoint>? ReuseSpeed(string path, string key)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var f = System.Text.Json.JsonSerializer.Deserialize(File.ReadAllText(path), EvalJson.Default.SpeedSweepFile);
            return f is not null && f.Key == key ? f.Points : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    private static HeatmapData? ReuseHeatmap(string path, string model, int? layer, int? head, int context)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var h = System.Text.Json.JsonSerializer.Deserialize(File.ReadAllText(path), EvalJson.Default.HeatmapData);
            if (h is null || h.Model != model || h.Positions != context - 1 || (layer is int l && h.Layer != l) || (head is int hd && h.Head != hd)) return null;
            if (layer is null && head is null && !h.Selection.StartsWith("The head was chosen", StringComparison.Ordinal)) return null;
            return h;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    private static HeatmapData RecordHeatmap(IInferenceEngine engine, PromptBuilder builder, int context, string model, int? layer, int? head, EvalGrid grid, string path)
    {
        var h = AttentionPatternRun.Record(engine, builder, context, model, layer, head, AttentionPatternRun.DefaultSteps, grid.Seed);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(h, EvalJson.Default.HeatmapData));
        return h;
    }

    private static string Count(int n, string noun) => string.Create(CultureInfo.InvariantCulture, $"{n} {noun}{(n == 1 ? "" : "s")}");

    private static string CommandLine()
    {
        var args = Environment.GetCommandLineArgs().Skip(1).Select(a => a.Any(char.IsWhiteSpace) ? $"'{a}'" : a);
        return "sparsedecode " + string.Join(' ', args);
    }

    public static int[] DefaultContexts(int max)
    {
        var list = new List<int>();
        for (int c = 1024; c < max; c *= 2) list.Add(c);
        list.Add(max);
        return list.Where(c => c >= 512).Distinct().ToArray();
    }

    private static Dictionary<string, string> ParseParams(string[] items)
    {
        var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string item in items)
        {
            int eq = item.IndexOf('=');
            if (eq <= 0) throw new ArgumentException($"--param '{item}' must look like name=value or method.name=value.");
            d[item[..eq].Trim()] = item[(eq + 1)..].Trim();
        }
        return d;
    }

    private static List<string> SplitList(string s) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct().ToList();

    private static int[] ParseInts(string s, string option) => SplitList(s).Select(x =>
        int.TryParse(x.EndsWith('k') || x.EndsWith('K') ? x[..^1] : x, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)
            ? (x.EndsWith('k') || x.EndsWith('K') ? v * 1024 : v)
            : throw new ArgumentException($"{option}: '{x}' is not a whole number of tokens.")).Distinct().Order().ToArray();

    /// <summary>The settings stored beside the model ("tidal.reselect") under the explicit --param ones: a stored
    /// setting is dropped where --param names it, scoped or not, and where its method is not in the grid (the grid
    /// rejects a scoped parameter of an absent method, which is right for what a user types, not for the file).</summary>
    private static Dictionary<string, string> WithStoredDefaults(IReadOnlyDictionary<string, string> given, MethodDefaults stored,
        IReadOnlyCollection<string> methods)
    {
        var d = new Dictionary<string, string>(given, StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in stored.Scoped())
        {
            int dot = key.IndexOf('.');
            if (methods.Contains(key[..dot], StringComparer.OrdinalIgnoreCase) && !d.ContainsKey(key) && !d.ContainsKey(key[(dot + 1)..]))
                d[key] = value;
        }
        return d;
    }
}
