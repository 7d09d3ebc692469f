using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SparseDecode.Evaluation;

/// <summary>Writes a run's outputs into its directory: results.json, results.csv, report.md with its tables, and
/// the plots as PNG (embedded in report.md) and SVG (accuracy and attention-mass recall vs budget, step time vs
/// context, the attention heat map), drawn by ScottPlot.</summary>
public sealed class ReportWriter(string directory)
{
    private static readonly CultureInfo Ci = CultureInfo.InvariantCulture;

    public const string AccuracyPlot = "accuracy_vs_budget";
    public const string RecallPlot = "recall_vs_budget";
    public const string StepTimePlot = "step_time_vs_context";
    public const string HeatmapPlot = "attention_heatmap";
    public const string RecentPlot = "attention_recent";

    public IReadOnlyList<string> Written => _written;
    private readonly List<string> _written = [];

    public void WriteAll(EvalResultsFile results, EvalGrid grid, HeatmapData? heatmap)
    {
        Directory.CreateDirectory(directory);
        Write("results.json", JsonSerializer.Serialize(results, new EvalJson(new JsonSerializerOptions(EvalJson.Default.Options) { WriteIndented = true }).EvalResultsFile));
        Write("results.csv", Csv(results.Cells));
        var rows = results.Summary;
        Save(() => AccuracyChart(rows).Save(directory, AccuracyPlot));
        Save(() => RecallChart(rows).Save(directory, RecallPlot));
        Save(() => StepTimeChart(rows, grid, results.Speed).Save(directory, StepTimePlot));
        if (heatmap is not null)
        {
            Write("heatmap.json", JsonSerializer.Serialize(heatmap, EvalJson.Default.HeatmapData));
            Save(() => PlotFiles.Save(AttentionHeatmap.Whole(heatmap, HeatmapTitle(heatmap)), directory, HeatmapPlot, 1000, 520));
            Save(() => PlotFiles.Save(AttentionHeatmap.Recent(heatmap, HeatmapTitle(heatmap)), directory, RecentPlot, 1000, 520));
        }
        Write("report.md", Markdown(results, grid, heatmap));
    }

    private void Write(string name, string text)
    {
        string path = Path.Combine(directory, name);
        File.WriteAllText(path, text, new UTF8Encoding(false));
        _written.Add(path);
    }

    public static string HeatmapTitle(HeatmapData h) =>
        $"Dense attention of layer {h.Layer}, head {h.Head} over {h.Binned.Length} decode steps after a {h.PromptTokens}-token prompt";

    // ------------------------------------------------------------------ CSV

    public static string Csv(IReadOnlyList<CellResult> cells)
    {
        var sb = new StringBuilder();
        sb.AppendLine("model,task,context,sample,method,budget,budget_tokens,prompt_tokens,depth,score,exact,partial,nll,expected,generated,step_ms,timed_steps,mass_recall,topk_recall,output_error,keys_scored_per_step,keys_attended_per_step,select_ms_per_step,attend_ms_per_step,observed_steps,prefill_seconds,seconds,prompt_fingerprint,speculate,spec_identical_to_dense,spec_first_difference,spec_score,spec_generated,spec_passes,spec_drafted,spec_accepted,spec_ms_per_token");
        foreach (var c in cells)
        {
            sb.AppendJoin(',', [
                Q(c.Model), c.Task, N(c.Context), N(c.Sample), c.Method, Q(c.Budget), N(c.BudgetTokens), N(c.PromptTokens),
                c.Depth is double d ? D(d) : "", D(c.Score), c.Exact ? "1" : "0", D(c.Partial), c.Nll is double n ? D(n) : "",
                Q(c.Expected ?? ""), Q(c.Generated ?? ""), D(c.StepMs), N(c.TimedSteps), D(c.MassRecall), D(c.TopKRecall),
                D(c.OutputError), D(c.KeysScoredPerStep), D(c.KeysAttendedPerStep), D(c.SelectMsPerStep), D(c.AttendMsPerStep),
                N(c.ObservedSteps), D(c.PrefillSeconds), D(c.Seconds), c.PromptFingerprint ?? "",
                .. c.Speculative is { } x
                    ? (string[])[x.Draft, x.IdenticalToDense ? "1" : "0", x.FirstDifference is int f ? N(f) : "", D(x.Score), Q(x.Generated ?? ""),
                        N(x.Passes), x.Drafted.ToString(Ci), x.Accepted.ToString(Ci), D(x.MsPerToken)]
                    : ["", "", "", "", "", "", "", "", ""]]);
            sb.Append('\n');
        }
        return sb.ToString();
    }

    private static string N(int v) => v.ToString(Ci);
    private static string D(double v) => v.ToString("G6", Ci);

    private static string Q(string s) =>
        s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    // ------------------------------------------------------------------ plots

    /// <summary>Sideways offset between methods at the same budget on the log budget axis (see the captions).</summary>
    public const double BudgetDodge = 0.04;

    /// <summary>Needle-task accuracy as a share of dense's on the same samples, with the paired bootstrap interval of
    /// that ratio (<see cref="PairedDifference.RatioCi"/>); dense is the 100% line.</summary>
    public static LineChart AccuracyChart(IReadOnlyList<MethodSummary> rows) =>
        BudgetChart(rows, "Accuracy as % of dense vs budget (needle tasks, paired by sample)", "% of dense accuracy (paired 95% bootstrap CI)",
            r => r.Budget == MethodBudget.NoBudget
                ? (r.OfDense ?? double.NaN, Interval.None)
                : (r.OfDense ?? double.NaN, r.VsDense?.Mean.RatioCi ?? Interval.None), yMax: null);

    public static LineChart RecallChart(IReadOnlyList<MethodSummary> rows) =>
        BudgetChart(rows, "Attention-mass recall vs budget", "attention mass kept (%, 95% CI)",
            r => (r.MassRecall, r.MassRecallCi), yMax: 105);

    /// <summary>Sparse methods as lines over their budgets (log axis, ticked at each budget); dense, which has no
    /// budget, as a horizontal reference line with its interval (if any) as a band. Values in percent, as in the
    /// tables; the y axis runs from 0 to `yMax`, or past the highest interval when it is null.</summary>
    private static LineChart BudgetChart(IReadOnlyList<MethodSummary> rows, string title, string yLabel, Func<MethodSummary, (double Value, Interval Ci)> y,
        double? yMax)
    {
        var sparse = rows.Where(r => r.Budget != MethodBudget.NoBudget).ToList();
        // a budget's tick is its nominal text ("2%") at the mean share it resolved to
        var labels = sparse.GroupBy(r => Math.Round(r.BudgetShare * 100, 6)).ToDictionary(g => g.Key, g => g.First().Budget);
        var chart = new LineChart
        {
            Title = title,
            XLabel = "budget (keys per head, % of the prompt; log scale)",
            YLabel = yLabel,
            YMin = 0,
            YMax = yMax,
            XFormat = x => labels.TryGetValue(Math.Round(x, 6), out string? b) ? b : LineChart.Percent(x),
            Dodge = BudgetDodge,
        };
        ChartPoint Point(double x, MethodSummary r)
        {
            var (v, ci) = y(r);
            return new ChartPoint(x, v * 100, ci.Low * 100, ci.High * 100);
        }
        foreach (var d in rows.Where(r => r.Budget == MethodBudget.NoBudget))
            chart.Series.Add(new ChartSeries($"{d.Method} (all keys)", [Point(double.NaN, d)], LineChart.ColorFor(d.Method), Reference: true));
        foreach (var g in sparse.GroupBy(r => r.Method))
            chart.Series.Add(new ChartSeries(g.Key, g.Select(r => Point(Math.Round(r.BudgetShare * 100, 6), r)).ToList(), LineChart.ColorFor(g.Key)));
        return chart;
    }

    /// <summary>Step time per context: from the sweep when there is one (every context from one prefill), else from
    /// the grid's cells. Every (method, budget) pair is a series: a method's budgets share its colour and differ in
    /// dash, dense is the thick black line.</summary>
    public static LineChart StepTimeChart(IReadOnlyList<MethodSummary> rows, EvalGrid grid, IReadOnlyList<SpeedPoint> speed)
    {
        var chart = new LineChart
        {
            Title = "Decode step time vs context length",
            XLabel = "context length (tokens; log scale)",
            YLabel = "ms per decode step (median)",
            YMin = 0,
            XFormat = v => v >= 1024 ? (v / 1024).ToString("0.#", Ci) + "K" : v.ToString("0", Ci),
        };
        bool oneBudget = grid.Budgets.Count <= 1;
        foreach (var pair in grid.Pairs)
        {
            var pts = speed.Count > 0
                ? speed.Where(p => p.Method == pair.Method && p.Budget == pair.Budget).Select(p => new ChartPoint(p.Context, p.StepMs)).ToList()
                : rows.FirstOrDefault(r => r.Method == pair.Method && r.Budget == pair.Budget)?.StepMsByContext
                    .Select(kv => new ChartPoint(double.Parse(kv.Key, Ci), kv.Value)).ToList() ?? [];
            string name = pair.IsDense || oneBudget ? pair.Method : pair.ToString();
            int style = pair.IsDense ? 0 : Math.Max(0, grid.Budgets.ToList().IndexOf(pair.Budget));
            chart.Series.Add(new ChartSeries(name, pts, LineChart.ColorFor(pair.Method), Style: style));
        }
        return chart;
    }

    private static string MarkerName(int style) => (style % 4) switch { 0 => "filled circles", 1 => "open squares", 2 => "triangles", _ => "open diamonds" };

    private void Save(Func<IReadOnlyList<string>> render) => _written.AddRange(render());

    // ------------------------------------------------------------------ markdown

    private static string P(double v) => double.IsFinite(v) ? (v * 100).ToString("0.0", Ci) : "–";
    /// <summary>" [46.1–82.0]": a 95% interval in percent, or nothing when there is none.</summary>
    private static string Ci95(Interval ci) => ci.IsFinite ? $" [{P(ci.Low)}–{P(ci.High)}]" : "";
    /// <summary>A difference of scores in points, signed: "+1.2", "-4.0".</summary>
    private static string Pts(double v) => double.IsFinite(v) ? (v * 100).ToString("+0.0;-0.0;0.0", Ci) : "–";
    /// <summary>"-4.2 [-8.1, -0.6]": a paired difference in points with its 95% interval.</summary>
    private static string Delta(PairedDifference? d) => d is null ? "–" : $"{Pts(d.Estimate)} [{Pts(d.Ci.Low)}, {Pts(d.Ci.High)}]";
    /// <summary>A p-value as the tables show it: "&lt;0.001", three decimals below 0.1, two above.</summary>
    public static string PValue(double p) => !double.IsFinite(p) ? "–" : p < 0.001 ? "<0.001" : p.ToString(p < 0.1 ? "0.000" : "0.00", Ci);
    private static string F2(double v) => double.IsFinite(v) ? v.ToString("0.00", Ci) : "–";
    private static string F3(double v) => double.IsFinite(v) ? v.ToString("0.000", Ci) : "–";
    private static string F0(double v) => double.IsFinite(v) ? v.ToString("0", Ci) : "–";

    public static string Markdown(EvalResultsFile results, EvalGrid grid, HeatmapData? heatmap)
    {
        var rows = results.Summary;
        int longest = grid.Contexts.Max();
        string L = EvalSummary.Ctx(longest);
        var needle = grid.Tasks.Where(t => t != RulerTasks.Perplexity).ToList();
        bool hasPpl = grid.Tasks.Contains(RulerTasks.Perplexity);
        var sb = new StringBuilder();
        sb.AppendLine("# SparseDecode evaluation");
        sb.AppendLine();
        sb.AppendLine("Made by:");
        sb.AppendLine();
        sb.AppendLine("```");
        sb.AppendLine(results.Command);
        sb.AppendLine("```");
        sb.AppendLine();
        sb.AppendLine($"- model: `{results.Model}`");
        sb.AppendLine($"- machine: {results.Machine}; report written {results.Created}");
        var g = results.Grid;
        sb.AppendLine($"- grid: methods {string.Join(", ", g.Methods)}; budgets {string.Join(", ", g.Budgets)}; contexts {string.Join(", ", g.Contexts)}; tasks {string.Join(", ", g.Tasks)}; {g.Samples} samples per task and context (seed {g.Seed}); KV cache {g.KvType}{(g.Parameters.Length > 0 ? "; parameters " + g.Parameters : "")}");
        double prefill = results.Cells.GroupBy(c => (c.Task, c.Context, c.Sample)).Sum(g => g.Max(c => c.PrefillSeconds));
        double decode = results.Cells.Sum(c => c.Seconds);
        sb.AppendLine($"- {results.Cells.Count} cells; every sample prefilled once with dense attention, each method decoding from a copy of that cache; " +
                      $"compute over all cells (this and earlier invocations that filled them): {((prefill + decode) / 60).ToString("0.0", Ci)} min " +
                      $"(prefills {(prefill / 60).ToString("0.0", Ci)} min, decode passes {(decode / 60).ToString("0.0", Ci)} min)");
        sb.AppendLine();

        sb.AppendLine("## Accuracy and speed");
        sb.AppendLine();
        sb.AppendLine($"Task scores (%) are means over contexts and samples — {g.Samples} sample{(g.Samples == 1 ? "" : "s")} per task and context, so one answer moves a task's score by {P(1.0 / (g.Samples * g.Contexts.Count))} points; the mean's 95% Wilson interval over its needle cells is given in brackets — " +
                      $"(exact match; fraction of expected items for multivalue, multiquery, vartrack, cwe; edit similarity of the completed line for lcc){(hasPpl ? "; ppl is the perplexity of held-out code continued under the method (lower is better)" : "")}. " +
                      "% of dense: the row's needle-task score ÷ dense's on the same samples, with the paired bootstrap interval of the next section. " +
                      $"Keys read: keys attended per decode step (all layers and heads) as a share of dense's — the budget plus what a method adds (dense leading layers, sinks, δ-driven refills). " +
                      $"Speed-up: dense step time ÷ the method's, whole decode step, at context {L}.");
        sb.AppendLine();
        var head = new List<string> { "method", "budget" };
        head.AddRange(needle);
        head.AddRange(["mean [95% Wilson CI]", "% of dense [paired 95% CI]"]);
        if (hasPpl) head.Add("ppl");
        head.AddRange(["keys read % of dense", "mass recall", $"step ms @{L}", "speed-up"]);
        Table(sb, head, rows.Select(r =>
        {
            var cells = new List<string> { r.Method, r.Budget };
            cells.AddRange(needle.Select(t => r.Accuracy.TryGetValue(t, out double v) ? P(v) : "–"));
            cells.Add(P(r.MeanAccuracy) + Ci95(r.MeanAccuracyCi));
            cells.Add(r.OfDense is double o ? P(o) + Ci95(r.VsDense?.Mean.RatioCi ?? Interval.None) : "–");
            if (hasPpl) cells.Add(r.Perplexity is double ppl ? F2(ppl) : "–");
            cells.Add(r.AttendedOfDense is double ad ? P(ad) : "–");
            cells.Add(F3(r.MassRecall));
            cells.Add(r.StepMsByContext.TryGetValue(L, out double ms) ? F2(ms) : "–");
            cells.Add(r.SpeedUp is double s ? s.ToString("0.00", Ci) + "×" : "–");
            return cells;
        }));

        if (results.Load is { Shared: true } load)
            sb.AppendLine(string.Create(Ci, $"> **The step times and speed-ups above are not a speed measurement:** other processes kept {load.OtherCores:0.00} of the host's {load.Cores} cores busy on average during the run. `sparsedecode bench` on a quiet machine measures speed.")).AppendLine();
        else if (results.Load is { } quiet)
            sb.AppendLine(string.Create(Ci, $"Other processes kept {quiet.OtherCores:0.00} of the host's {quiet.Cores} cores busy on average during the run.")).AppendLine();

        Lossless(sb, rows, needle);

        if (needle.Count > 0) PairedTables(sb, rows, grid, needle);
        if (grid.Tasks.Contains(RulerTasks.CodeCompletion)) CodeCompletionTable(sb, rows);

        Goals(sb, rows, grid, longest);

        if (needle.Count > 0)
        {
            sb.AppendLine("## Accuracy by context length");
            sb.AppendLine();
            sb.AppendLine("Mean needle-task score (%) per context, with its 95% Wilson interval over that context's needle cells.");
            sb.AppendLine();
            var h2 = new List<string> { "method", "budget" };
            h2.AddRange(grid.Contexts.Select(c => c.ToString(Ci)));
            Table(sb, h2, rows.Select(r =>
            {
                var cells = new List<string> { r.Method, r.Budget };
                cells.AddRange(grid.Contexts.Select(c => r.AccuracyByContext.TryGetValue(EvalSummary.Ctx(c), out double v)
                    ? P(v) + (r.AccuracyCiByContext.TryGetValue(EvalSummary.Ctx(c), out var ci) ? Ci95(ci) : "") : "–"));
                return cells;
            }));
            if (grid.Contexts.Count > 1 && rows.Any(r => r.VsDense is not null))
            {
                sb.AppendLine("Difference to dense (points) per context, paired by sample, with its paired bootstrap 95% interval and the paired test's p.");
                sb.AppendLine();
                Table(sb, h2, rows.Where(r => r.VsDense is not null).Select(r =>
                {
                    var cells = new List<string> { r.Method, r.Budget };
                    cells.AddRange(grid.Contexts.Select(c => r.VsDense!.ByContext.TryGetValue(EvalSummary.Ctx(c), out var d)
                        ? $"{Delta(d)} p {PValue(d.P)}" : "–"));
                    return cells;
                }));
            }
        }

        sb.AppendLine("## Fidelity");
        sb.AppendLine();
        sb.AppendLine("From the observer over the first decode steps of every cell (it computes dense attention beside the method): " +
                      "attention-mass recall (dense softmax mass on the selected keys), top-k recall against the oracle's top-k at the same budget, " +
                      "relative L2 error of the attention output, and the keys scored per step to make the selection (all layers and heads). " +
                      $"Selection and attention times are the engine's own timings of those two phases (all layers), at context {L}, " +
                      "taken in this observed pass: the observer computes dense attention and the recalls beside the method, which slows the " +
                      "method's own phases too, so select + attend here can exceed the whole un-observed step of the speed tables. " +
                      "Compare them with each other, not with those.");
        sb.AppendLine();
        Table(sb, ["method", "budget", "budget share", "mass recall", "top-k recall", "output error", "keys scored/step", "keys attended/step", "select ms/step", "attend ms/step", "attention speed-up"],
            rows.Select(r => new List<string>
            {
                r.Method, r.Budget, P(r.BudgetShare) + "%", F3(r.MassRecall), F3(r.TopKRecall), F3(r.OutputError),
                F0(r.KeysScoredPerStep), F0(r.KeysAttendedPerStep), F3(r.SelectMsPerStep), F3(r.AttendMsPerStep),
                r.AttentionSpeedUp is double a ? a.ToString("0.00", Ci) + "×" : "–",
            }));

        FidelityByLayer(sb, results.Cells, rows, needle);

        sb.AppendLine("## Decode step time by context length");
        sb.AppendLine();
        if (results.Speed.Count > 0)
        {
            var ctxs = results.Speed.Select(p => p.Context).Distinct().Order().ToList();
            sb.AppendLine($"Median wall time of one whole decode step (all layers, MLP and LM head included), ms, un-observed, over {results.Speed[0].Steps} timed steps, " +
                          $"with the fastest timed step in square brackets (the gap to the median is step-to-step variation, other load on the machine included) and the speed-up over dense in parentheses. One dense prefill of {ctxs.Max()} tokens of held-out code serves every context: each pair decodes the " +
                          "code that follows from a copy of its cache cut back to the context.");
            sb.AppendLine();
            var h3 = new List<string> { "method", "budget" };
            h3.AddRange(ctxs.Select(c => c.ToString(Ci)));
            var denseAt = results.Speed.Where(p => p.Budget == MethodBudget.NoBudget).ToDictionary(p => p.Context, p => p.StepMs);
            Table(sb, h3, grid.Pairs.Select(pair =>
            {
                var cells = new List<string> { pair.Method, pair.Budget };
                foreach (int c in ctxs)
                {
                    var pt = results.Speed.FirstOrDefault(p => p.Method == pair.Method && p.Budget == pair.Budget && p.Context == c);
                    cells.Add(pt is null ? "–" : F2(pt.StepMs) + $" [{F2(pt.MinMs)}]" + (pair.IsDense || !denseAt.TryGetValue(c, out double d) ? "" : $" ({(d / pt.StepMs).ToString("0.0", Ci)}×)"));
                }
                return (IReadOnlyList<string>)cells;
            }));
        }
        else
        {
            sb.AppendLine("Median wall time of one whole decode step (all layers, MLP included) in the grid's un-observed passes, ms.");
            sb.AppendLine();
            var h3 = new List<string> { "method", "budget" };
            h3.AddRange(grid.Contexts.Select(c => c.ToString(Ci)));
            Table(sb, h3, rows.Select(r =>
            {
                var cells = new List<string> { r.Method, r.Budget };
                cells.AddRange(grid.Contexts.Select(c => r.StepMsByContext.TryGetValue(EvalSummary.Ctx(c), out double v) ? F2(v) : "–"));
                return (IReadOnlyList<string>)cells;
            }));
        }

        sb.AppendLine("## Plots");
        sb.AppendLine();
        sb.AppendLine($"![accuracy vs budget]({AccuracyPlot}.png)");
        sb.AppendLine();
        string dodge = $"Methods at the same budget are drawn side by side, each offset by {P(BudgetDodge)}% of the budget on the log axis, so that their error bars stay apart; the tick is the budget they all ran at.";
        sb.AppendLine($"Mean needle-task accuracy per method and budget as a share of dense's on the same samples, with the paired bootstrap 95% interval of that share " +
                      $"(the % of dense of the paired-differences table). Dense, the reference every pair is measured against, is the horizontal black line at 100%. {dodge}");
        sb.AppendLine();
        sb.AppendLine($"![attention-mass recall vs budget]({RecallPlot}.png)");
        sb.AppendLine();
        sb.AppendLine($"Share of dense's attention mass on the keys a method selected, mean over cells with its 95% interval. {dodge}");
        sb.AppendLine();
        sb.AppendLine($"![step time vs context]({StepTimePlot}.png)");
        sb.AppendLine();
        sb.AppendLine("Median whole decode step per (method, budget) at each context" + (grid.Budgets.Count > 1 ? $"; a method's budgets share its colour and differ in marker ({string.Join(", ", grid.Budgets.Select((b, i) => b + " " + MarkerName(i)))})" : "") +
                      ". The tables above give the numbers; SVG copies of every plot lie beside the PNGs.");
        sb.AppendLine();
        if (heatmap is not null)
        {
            sb.AppendLine("## Attention pattern");
            sb.AppendLine();
            sb.AppendLine($"![attention heat map, whole context]({HeatmapPlot}.png)");
            sb.AppendLine();
            sb.AppendLine($"![attention heat map, recent keys]({RecentPlot}.png)");
            sb.AppendLine();
            sb.AppendLine($"Dense attention probabilities of layer {heatmap.Layer}, head {heatmap.Head} while decoding {heatmap.Binned.Length} tokens of held-out code " +
                          $"after a {heatmap.PromptTokens}-token prompt (log colour scale; at or below {AttentionHeatmap.Floor:0e0} the palest colour; grey: keys after the query, which the causal mask hides). First: the whole context, " +
                          $"each column the maximum over {AttentionHeatmap.PerBin(heatmap)} — vertical lines are positions the head returns to at every step " +
                          "(what LFPS's *vertical* candidates reuse). Second: the most recent keys at full resolution — diagonal lines are a constant offset behind the moving query " +
                          $"(LFPS's *slash* candidates, previous index + 1). {heatmap.Selection}");
            sb.AppendLine();
        }

        sb.AppendLine("## How this was measured");
        sb.AppendLine();
        sb.AppendLine($"- Prompts: RULER-style tasks in the formats the bundled model was trained on (docs/evaluation.md), built at token level in held-out code; a context of L positions holds a prompt of L − {EvalGrid.Reserve} tokens and the decoded tokens. Needle depths of the samples are the midpoints of equal slices of the haystack.");
        sb.AppendLine("- Answers: greedy decoding; the first answer token comes from the dense prefill's logits, every later one from a decode step through the method; the answer is the text before the first newline.");
        sb.AppendLine($"- Step time: a separate un-observed pass per cell (at least {g.TimingSteps} decode steps, the first dropped as warm-up, median of the rest); fidelity: a second pass over the same tokens with the observer attached ({g.FidelitySteps} steps).");
        sb.AppendLine("- Dense runs without a plan (the engine's dense attention), so its step time is the baseline the speed-ups divide.");
        return sb.ToString();
    }

    /// <summary>The lossless column (eval --speculate K): per row and per task, whether the speculative answers were
    /// dense decoding's, their accuracy beside dense's, and the draft tokens kept per verification pass. A sample
    /// whose tokens differ from dense's is a broken guarantee, and the section opens by saying so.</summary>
    private static void Lossless(StringBuilder sb, IReadOnlyList<MethodSummary> rows, IReadOnlyList<string> needle)
    {
        var spec = rows.Where(r => r.Lossless is not null).ToList();
        if (spec.Count == 0) return;
        int samples = spec.Sum(r => r.Lossless!.Samples), identical = spec.Sum(r => r.Lossless!.Identical);
        string drafts = string.Join(",", spec.Select(r => r.Lossless!.Draft).Distinct());
        sb.AppendLine("## Lossless decoding: self-speculative (`--speculate " + drafts + "`)");
        sb.AppendLine();
        sb.AppendLine(identical == samples
            ? $"**lossless: {identical}/{samples} samples identical to dense** — every speculative answer was dense decoding's, token for token."
            : $"> **NOT LOSSLESS: {samples - identical} of {samples} samples differ from dense decoding** (only {identical}/{samples} identical). " +
              "Speculative decoding's greedy output must be dense's token for token; the rows marked below broke that guarantee.");
        sb.AppendLine();
        sb.AppendLine("Each sparse needle cell also decoded its sample from the same dense prefill by self-speculative decoding: the row's method drafts " +
                      "K tokens per pass (auto: from 4, one more after a pass that kept every draft, one fewer after a rejection), a dense pass of the " +
                      "pending token and the drafts verifies them, the longest agreeing prefix is kept and the pass adds its own token. Identical: " +
                      "samples whose generated tokens equal dense decoding's of the same prompt (as many tokens as the cell's own answer). Accuracy: " +
                      "the speculative answers scored as the cells' are, beside dense's on the same samples. Kept per pass: draft tokens kept per " +
                      "verification pass (0..K); acceptance: kept ÷ proposed; tokens per pass: kept + 1.");
        sb.AppendLine();
        Table(sb, ["method", "budget", "K", "identical to dense", "accuracy % (dense %)", "kept per pass", "acceptance", "tokens per pass", "passes"],
            spec.Select(r =>
            {
                var l = r.Lossless!;
                return (IReadOnlyList<string>)
                [
                    r.Method, r.Budget, l.Draft, $"{l.Identical}/{l.Samples}" + (l.IsLossless ? "" : " **NOT LOSSLESS**"),
                    $"{P(l.Accuracy)} ({P(l.DenseAccuracy)})", F2(l.MeanAccepted), P(l.AcceptanceRate) + "%", F2(l.TokensPerPass),
                    l.Passes.ToString(Ci),
                ];
            }));
        sb.AppendLine("Per task: draft tokens kept per pass, acceptance in parentheses, and samples identical to dense.");
        sb.AppendLine();
        TaskTable(sb, spec, needle, (r, t) => r.LosslessByTask?.GetValueOrDefault(t) is { } l
            ? $"{F2(l.MeanAccepted)} ({P(l.AcceptanceRate)}%), {l.Identical}/{l.Samples}" + (l.IsLossless ? "" : " **NOT LOSSLESS**")
            : "–");
    }

    /// <summary>A table of one cell per row and needle task.</summary>
    private static void TaskTable(StringBuilder sb, IEnumerable<MethodSummary> rows, IReadOnlyList<string> needle, Func<MethodSummary, string, string> cell)
    {
        var head = new List<string> { "method", "budget" };
        head.AddRange(needle);
        Table(sb, head, rows.Select(r =>
        {
            var cells = new List<string> { r.Method, r.Budget };
            cells.AddRange(needle.Select(t => cell(r, t)));
            return (IReadOnlyList<string>)cells;
        }));
    }

    /// <summary>The paired comparisons: each row against dense and against the oracle at its budget (difference,
    /// interval, test, ratio), the samples a 5-point difference needs, and the difference to dense per task.</summary>
    private static void PairedTables(StringBuilder sb, IReadOnlyList<MethodSummary> rows, EvalGrid grid, IReadOnlyList<string> needle)
    {
        var compared = rows.Where(r => r.VsDense is not null).ToList();
        if (compared.Count == 0) return;
        int strata = needle.Count * grid.Contexts.Count;
        sb.AppendLine("### Paired differences to dense and to the oracle");
        sb.AppendLine();
        sb.AppendLine("Every method decodes the same prompts from the same dense prefill, so each sample gives a pair of scores: the method's and dense's " +
                      "(or the oracle's at the same budget). Δ is the mean needle-task score of the method minus the reference's over those pairs, in points, " +
                      $"with a paired bootstrap 95% interval: {PairedStatistics.Resamples.ToString("N0", Ci)} resamples of the samples within each task and context, " +
                      $"a sample's two scores drawn together (seed {PairedStatistics.DefaultSeed}), the 2.5th and 97.5th percentiles; % of dense is Σ method ÷ Σ dense " +
                      "over the pairs, its interval from the same resamples. p: two-sided paired test of no difference — exact McNemar on the discordant pairs " +
                      $"where every score is 0 or 1, else a sign-flip permutation test of the differences (exact up to {PairedStatistics.ExactSignFlipLimit} non-zero " +
                      $"differences, else {PairedStatistics.Resamples.ToString("N0", Ci)} seeded draws). Above / below: samples where the method scored higher / " +
                      "lower than dense. n for 5 points: samples per task and context a paired test at α = 0.05 (two-sided) needs to detect a 5-point difference " +
                      "to dense with 80% power, planned with the row's own mean squared difference to dense (the discordance rate for 0/1 scores; Connor 1987); " +
                      $"this grid has {grid.Samples}.");
        sb.AppendLine();
        Table(sb, ["method", "budget", "pairs", "Δ vs dense [95% CI]", "p", "above / below", "% of dense [95% CI]", "Δ vs oracle [95% CI]", "p vs oracle", "n for 5 points"],
            compared.Select(r =>
            {
                var d = r.VsDense!;
                return (IReadOnlyList<string>)
                [
                    r.Method, r.Budget, d.Mean.Pairs.ToString(Ci), Delta(d.Mean), PValue(d.Mean.P), $"{d.Mean.Higher} / {d.Mean.Lower}",
                    P(d.Mean.Ratio) + Ci95(d.Mean.RatioCi), Delta(r.VsOracle?.Mean), r.VsOracle is { } o ? PValue(o.Mean.P) : "–",
                    d.SamplesFor5Points.ToString(Ci),
                ];
            }));
        var needs = compared.Select(r => r.VsDense!.SamplesFor5Points).Order().ToList();
        var near = compared.Where(r => Math.Abs(r.VsDense!.Mean.Estimate) <= 0.10).Select(r => r.VsDense!.SamplesFor5Points).Order().ToList();
        sb.AppendLine(string.Create(Ci, $"**Samples for a 5-point difference.** With the discordance observed here, detecting a 5-point difference to dense at 80% power and α = 0.05 needs {needs[0]}–{needs[^1]} samples per task and context (median {needs[needs.Count / 2]}) over the {compared.Count} rows, ") +
                      (near.Count > 0 ? string.Create(Ci, $"{near[0]}–{near[^1]} (median {near[near.Count / 2]}) over the {near.Count} within 10 points of dense, where a 5-point difference is the question; ") : "") +
                      string.Create(Ci, $"the grid has {grid.Samples} ({grid.Samples * strata} pairs a row over {strata} task × context cells). A row whose need exceeds the grid's can still show a larger difference, not a 5-point one."));
        sb.AppendLine();

        sb.AppendLine("Difference to dense (points) per task, paired by sample, with its paired bootstrap 95% interval and the paired test's p.");
        sb.AppendLine();
        TaskTable(sb, compared, needle, (r, t) => r.VsDense!.ByTask.TryGetValue(t, out var d) ? $"{Delta(d)} p {PValue(d.P)}" : "–");
    }

    /// <summary>Code completion's two scores per row — edit similarity (its accuracy) and exact match — each with
    /// its paired difference to dense.</summary>
    private static void CodeCompletionTable(StringBuilder sb, IReadOnlyList<MethodSummary> rows)
    {
        const string lcc = RulerTasks.CodeCompletion;
        if (!rows.Any(r => r.Accuracy.ContainsKey(lcc))) return;
        sb.AppendLine("### Code completion");
        sb.AppendLine();
        sb.AppendLine("lcc: the next non-trivial line of held-out code after a long prefix of it (docs/evaluation.md). Edit similarity (its score in the tables " +
                      "above) is 100 · (1 − d ÷ (|a| + |b|)) of the stripped first generated line and the true line, d the insert/delete edit distance " +
                      "(fuzz.ratio, as LongBench's code_sim_score); exact match compares the stripped lines. Δ vs dense: mean paired difference in points " +
                      "with its paired bootstrap 95% interval and the paired test's p (sign-flip permutation for edit similarity, exact McNemar for exact match).");
        sb.AppendLine();
        Table(sb, ["method", "budget", "edit similarity %", "Δ vs dense [95% CI]", "p", "exact match %", "Δ vs dense [95% CI]", "p"],
            rows.Where(r => r.Accuracy.ContainsKey(lcc)).Select(r =>
            {
                var sim = r.VsDense?.ByTask.GetValueOrDefault(lcc);
                var exact = r.CodeExactMatchVsDense;
                return (IReadOnlyList<string>)
                [
                    r.Method, r.Budget, P(r.Accuracy[lcc]), Delta(sim), sim is null ? "–" : PValue(sim.P),
                    r.CodeExactMatch is double em ? P(em) : "–", Delta(exact), exact is null ? "–" : PValue(exact.P),
                ];
            }));
    }

    private static void Goals(StringBuilder sb, IReadOnlyList<MethodSummary> rows, EvalGrid grid, int longest)
    {
        var dense = rows.FirstOrDefault(r => r.Budget == MethodBudget.NoBudget);
        string L = EvalSummary.Ctx(longest);
        if (dense is null || !dense.AccuracyByContext.TryGetValue(L, out double denseAcc) || denseAcc <= 0) return;
        var lines = new List<string>();
        // % of dense at the longest context, paired, with its interval; the goal is decided only where the
        // interval lies on one side of 95%
        static PairedDifference? AtL(MethodSummary r, string L) => r.VsDense?.ByContext.GetValueOrDefault(L);
        static string OfDense(PairedDifference? d) => d is null ? "–" : P(d.Ratio) + Ci95(d.RatioCi);
        foreach (string budget in grid.Budgets)
        {
            var at = rows.Where(r => r.Budget == budget).ToDictionary(r => r.Method);
            double Acc(string m) => at.TryGetValue(m, out var r) && r.AccuracyByContext.TryGetValue(L, out double v) ? v : double.NaN;
            double baseline = new[] { "streaming", "quest" }.Select(Acc).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Max();
            foreach (string m in new[] { "tidal", "lfps", "prhs" })
            {
                double a = Acc(m);
                if (!double.IsFinite(a)) continue;
                var d = AtL(at[m], L);
                string keeps = d is null || !d.RatioCi.IsFinite ? (a >= 0.95 * denseAcc ? "yes" : "**no**")
                    : d.RatioCi.Low >= 0.95 ? "yes" : d.RatioCi.High < 0.95 ? "**no**" : "not resolved";
                string beats = !double.IsFinite(baseline) ? "–" : a > baseline ? "yes" : a == baseline ? "tie" : "**no**";
                string read = at[m].AttendedOfDense is double ad ? P(ad) : "–";
                lines.Add($"| {m} | {budget} | {P(a)} | {OfDense(d)} | {keeps} | {(double.IsFinite(baseline) ? P(baseline) : "–")} | {beats} | {read} |");
            }
            if (double.IsFinite(Acc(EvalSummary.OracleMethod)))
                lines.Add($"| oracle (exact top-k) | {budget} | {P(Acc(EvalSummary.OracleMethod))} | {OfDense(AtL(at[EvalSummary.OracleMethod], L))} | | | | {(at[EvalSummary.OracleMethod].AttendedOfDense is double od ? P(od) : "–")} |");
        }
        if (lines.Count == 0) return;
        sb.AppendLine($"### Goals at context {L}");
        sb.AppendLine();
        sb.AppendLine($"Dense accuracy at {L}: {P(denseAcc)}%. Goal: the founding methods keep ≥ 95% of it at a budget ≤ 5% of the context and beat streaming and quest at equal budget. " +
                      "% of dense is paired by sample, with its paired bootstrap 95% interval: the goal is met (yes) when the whole interval lies at or above 95%, missed (**no**) when it lies below, and not resolved by this grid's samples when it straddles 95%. " +
                      "The last column is what a method really read (keys attended per step as a share of dense): a method that reads far more than its budget meets the accuracy goal on other terms.");
        sb.AppendLine();
        sb.AppendLine("| method | budget | accuracy % | % of dense [paired 95% CI] | ≥ 95% of dense | best of streaming/quest % | beats them | keys read % of dense |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (string l in lines) sb.AppendLine(l);
        sb.AppendLine();
    }

    /// <summary>Where the methods lose keys: per (method, budget) row and per layer, the needle-task cells' mean
    /// attention-mass recall, top-k recall, needle recall and needle-mass recall; then per needle task, accuracy
    /// beside the needle figures of all layers. Nothing is written when no needle cell carries per-layer figures
    /// (cells stored before they were measured, engines without an observer).</summary>
    private static void FidelityByLayer(StringBuilder sb, IReadOnlyList<CellResult> cells, IReadOnlyList<MethodSummary> rows, IReadOnlyList<string> needle)
    {
        var byRow = rows.Select(r => (Row: r, Cells: cells.Where(c => c.Method == r.Method && c.Budget == r.Budget
            && needle.Contains(c.Task) && c.Layers is { Length: > 0 }).ToList())).Where(x => x.Cells.Count > 0).ToList();
        if (byRow.Count == 0) return;
        int layers = byRow.Max(x => x.Cells.Max(c => c.Layers!.Length));
        static double Mean(IEnumerable<double> xs) => xs.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
        sb.AppendLine("## Fidelity by layer");
        sb.AppendLine();
        sb.AppendLine("Needle-task cells only, from the same observed decode steps as the fidelity table (they produce the answer after its " +
                      "first token, which the prefill predicts), mean over cells of each cell's mean over steps and query heads. " +
                      "Mass recall: dense attention's mass on the keys attended; top-k recall: their share of dense's top-k, k = keys attended; " +
                      "needle recall: the share of the needle lines' tokens among the keys attended; needle-mass recall: dense attention's mass " +
                      "on the needle tokens that were attended ÷ its mass on all of them (summed over steps and heads first, so the heads that " +
                      "look at the needles weigh most). A dense layer (leading dense layers) reads 1 throughout. Keys attended: per decode step, all layers and heads.");
        sb.AppendLine();
        void PerLayer(string title, Func<LayerFidelity, double> value, Func<CellResult, double> all)
        {
            sb.AppendLine($"### {title} per layer");
            sb.AppendLine();
            var head = new List<string> { "method", "budget", "keys attended/step" };
            for (int l = 0; l < layers; l++) head.Add("L" + l.ToString(Ci));
            head.Add("all");
            Table(sb, head, byRow.Select(x =>
            {
                var line = new List<string> { x.Row.Method, x.Row.Budget, F0(Mean(x.Cells.Select(c => c.KeysAttendedPerStep))) };
                for (int l = 0; l < layers; l++) line.Add(F3(Mean(x.Cells.Where(c => l < c.Layers!.Length).Select(c => value(c.Layers![l])))));
                line.Add(F3(Mean(x.Cells.Select(all))));
                return line;
            }));
        }
        PerLayer("Attention-mass recall", f => f.MassRecall, c => c.MassRecall);
        PerLayer("Top-k recall", f => f.TopKRecall, c => c.TopKRecall);
        PerLayer("Needle recall", f => f.NeedleRecall, c => c.NeedleRecall ?? double.NaN);
        PerLayer("Needle-mass recall", f => f.NeedleMassRecall, c => c.NeedleMassRecall ?? double.NaN);
        sb.AppendLine("### Needles per task");
        sb.AppendLine();
        Table(sb, ["method", "budget", "task", "cells", "accuracy %", "mass recall", "needle recall", "needle-mass recall"],
            byRow.SelectMany(x => x.Cells.GroupBy(c => c.Task).OrderBy(t => needle.ToList().IndexOf(t.Key)).Select(t => (IReadOnlyList<string>)
            [
                x.Row.Method, x.Row.Budget, t.Key, t.Count().ToString(Ci), P(t.Average(c => c.Score)), F3(Mean(t.Select(c => c.MassRecall))),
                F3(Mean(t.Select(c => c.NeedleRecall ?? double.NaN))), F3(Mean(t.Select(c => c.NeedleMassRecall ?? double.NaN))),
            ])));
    }

    private static void Table(StringBuilder sb, IReadOnlyList<string> head, IEnumerable<IReadOnlyList<string>> rows)
    {
        sb.AppendLine("| " + string.Join(" | ", head) + " |");
        sb.AppendLine("|" + string.Concat(head.Select((_, i) => i < 2 ? "---|" : "---:|")));
        foreach (var r in rows) sb.AppendLine("| " + string.Join(" | ", r.Select(c => c.Replace("|", "\\|"))) + " |");
        sb.AppendLine();
    }
}
