using System.Globalization;

namespace SparseDecode.Evaluation;

/// <summary>One (method, budget) row of the results: accuracy per task (mean score; perplexity for ppl), fidelity
/// means, and step time per context with the speed-up over dense at the longest context.</summary>
public sealed record MethodSummary
{
    public required string Method { get; init; }
    public required string Budget { get; init; }
    public required string Label { get; init; }
    public required Dictionary<string, double> Accuracy { get; init; }
    /// <summary>Mean of the needle tasks' accuracies (NaN when the grid has none).</summary>
    public required double MeanAccuracy { get; init; }
    /// <summary>Standard error of MeanAccuracy: the spread of the needle cells' scores ÷ √cells (how far one more
    /// or one fewer right answer moves it).</summary>
    public double MeanAccuracyStdErr { get; init; }
    /// <summary>Needle-task cells behind MeanAccuracy.</summary>
    public int NeedleCells { get; init; }
    /// <summary>95% Wilson interval of MeanAccuracy over its NeedleCells.</summary>
    public Interval MeanAccuracyCi { get; init; } = Interval.None;
    /// <summary>95% Wilson interval of each context's AccuracyByContext over its needle cells.</summary>
    public Dictionary<string, Interval> AccuracyCiByContext { get; init; } = [];
    /// <summary>95% interval of MassRecall over the cells.</summary>
    public Interval MassRecallCi { get; init; } = Interval.None;
    /// <summary>Needle-task accuracy ÷ dense's on the same samples (<see cref="VsDense"/>'s ratio; 1 for dense).</summary>
    public double? OfDense { get; init; }
    /// <summary>This row against dense on the same samples: the paired difference, its interval and test, the ratio
    /// with its interval (null for dense itself, or when the grid has no dense row or no needle task).</summary>
    public PairedComparison? VsDense { get; init; }
    /// <summary>This row against the oracle top-k at the same budget, paired the same way (null for dense and the
    /// oracle, or when the grid has no oracle row at this budget).</summary>
    public PairedComparison? VsOracle { get; init; }
    public double? Perplexity { get; init; }
    /// <summary>Code completion's exact-match rate (its accuracy is the edit similarity); null without lcc cells.</summary>
    public double? CodeExactMatch { get; init; }
    /// <summary>Code completion's exact match against dense's on the same samples (0/1 scores: exact McNemar); null
    /// for dense and without lcc cells.</summary>
    public PairedDifference? CodeExactMatchVsDense { get; init; }
    /// <summary>Mean accuracy over needle tasks per context length.</summary>
    public required Dictionary<string, double> AccuracyByContext { get; init; }
    /// <summary>Mean of the resolved budget as a share of the prompt (1 for dense).</summary>
    public required double BudgetShare { get; init; }
    public required double MassRecall { get; init; }
    public required double TopKRecall { get; init; }
    public required double OutputError { get; init; }
    public required double KeysScoredPerStep { get; init; }
    public required double KeysAttendedPerStep { get; init; }
    /// <summary>Keys attended per step ÷ dense's on the same samples: the share of the context the method really
    /// read (dense leading layers, sinks and δ-driven additions included), next to the nominal budget.</summary>
    public double? AttendedOfDense { get; init; }
    public required double SelectMsPerStep { get; init; }
    public required double AttendMsPerStep { get; init; }
    /// <summary>Median whole-step time (ms) per context length, un-observed.</summary>
    public required Dictionary<string, double> StepMsByContext { get; init; }
    /// <summary>Dense step time ÷ this method's at the longest context (paired by sample, then averaged).</summary>
    public double? SpeedUp { get; init; }
    /// <summary>Dense attention time ÷ this method's selection + attention time, at the longest context.</summary>
    public double? AttentionSpeedUp { get; init; }
    public required int Cells { get; init; }
    /// <summary>The lossless column over the row's needle cells (null where none carries one: dense, and grids
    /// run without --speculate).</summary>
    public LosslessSummary? Lossless { get; init; }
    /// <summary>The lossless column per needle task.</summary>
    public Dictionary<string, LosslessSummary>? LosslessByTask { get; init; }
}

/// <summary>Self-speculative decoding with the row's method as the draft, over a set of cells: how many of the
/// samples' answers were dense decoding's token for token (all of them, or the engine is not lossless), the
/// speculative answers' accuracy beside dense's on the same samples, and how much of the drafting was kept.</summary>
public sealed record LosslessSummary
{
    /// <summary>Draft tokens per pass as given ("4", "auto"); several values joined by "," where cells differ.</summary>
    public required string Draft { get; init; }
    public required int Samples { get; init; }
    /// <summary>Samples whose speculative tokens equal dense decoding's.</summary>
    public required int Identical { get; init; }
    /// <summary>Mean score of the speculative answers (for a row: the mean of its tasks' means, as MeanAccuracy).</summary>
    public required double Accuracy { get; init; }
    /// <summary>Dense's accuracy on the same samples, averaged the same way (NaN where the grid has no dense cells).</summary>
    public required double DenseAccuracy { get; init; }
    public required long Passes { get; init; }
    public required long Drafted { get; init; }
    public required long Accepted { get; init; }

    public bool IsLossless => Identical == Samples;
    /// <summary>Draft tokens kept per verification pass, over all the passes.</summary>
    public double MeanAccepted => Passes == 0 ? 0 : (double)Accepted / Passes;
    /// <summary>Share of the draft tokens proposed that were kept.</summary>
    public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
    /// <summary>Tokens each verification pass yields: the kept drafts and its own.</summary>
    public double TokensPerPass => Passes == 0 ? 0 : (double)(Accepted + Passes) / Passes;

    /// <summary>The summary of `cells` (those carrying the column), their accuracy and dense's as `accuracy`
    /// averages scores (a mean over tasks for a row); null when none carries it.</summary>
    public static LosslessSummary? Of(IReadOnlyList<CellResult> cells, IReadOnlyDictionary<(string, int, int), CellResult> dense,
        Func<IEnumerable<(string Task, double Score)>, double> accuracy)
    {
        var run = cells.Where(c => c.Speculative is not null).ToList();
        if (run.Count == 0) return null;
        var paired = run.Where(c => dense.ContainsKey((c.Task, c.Context, c.Sample))).ToList();
        return new LosslessSummary
        {
            Draft = string.Join(",", run.Select(c => c.Speculative!.Draft).Distinct()),
            Samples = run.Count,
            Identical = run.Count(c => c.Speculative!.IdenticalToDense),
            Accuracy = accuracy(run.Select(c => (c.Task, c.Speculative!.Score))),
            DenseAccuracy = paired.Count == 0 ? double.NaN : accuracy(paired.Select(c => (c.Task, dense[(c.Task, c.Context, c.Sample)].Score))),
            Passes = run.Sum(c => (long)c.Speculative!.Passes),
            Drafted = run.Sum(c => c.Speculative!.Drafted),
            Accepted = run.Sum(c => c.Speculative!.Accepted),
        };
    }
}

/// <summary>Aggregates cell results into method rows.</summary>
public static class EvalSummary
{
    /// <summary>The exact per-head top-k, the ceiling a selection at equal budget is compared with.</summary>
    public const string OracleMethod = "oracle";

    public static string Ctx(int c) => c.ToString(CultureInfo.InvariantCulture);

    private static double StdErr(IReadOnlyList<double> xs)
    {
        if (xs.Count < 2) return double.NaN;
        double m = xs.Average();
        double v = xs.Sum(x => (x - m) * (x - m)) / (xs.Count - 1);
        return Math.Sqrt(v / xs.Count);
    }

    /// <summary>The mean of the measured values (fidelity figures are NaN in cells an engine could not observe).</summary>
    private static double MeasuredMean(IEnumerable<double> xs) => xs.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();

    /// <summary>The mean over tasks of each task's mean score (how MeanAccuracy weighs tasks).</summary>
    private static double TaskMean(IEnumerable<(string Task, double Score)> scores) =>
        scores.GroupBy(x => x.Task).Select(g => g.Average(x => x.Score)).DefaultIfEmpty(double.NaN).Average();

    public static IReadOnlyList<MethodSummary> Summarize(IReadOnlyList<CellResult> cells, EvalGrid grid)
    {
        var rows = new List<MethodSummary>();
        int longest = grid.Contexts.Max();
        var dense = cells.Where(c => c.Method == EvalGrid.DenseMethod).ToDictionary(c => (c.Task, c.Context, c.Sample));
        var needleTasks = grid.Tasks.Where(t => t != RulerTasks.Perplexity).ToList();
        foreach (var pair in grid.Pairs)
        {
            var mine = cells.Where(c => c.Method == pair.Method && c.Budget == pair.Budget).ToList();
            if (mine.Count == 0) continue;
            var acc = new Dictionary<string, double>();
            foreach (string t in grid.Tasks)
            {
                var tc = mine.Where(c => c.Task == t).ToList();
                if (tc.Count == 0) continue;
                acc[t] = t == RulerTasks.Perplexity ? Math.Exp(tc.Average(c => c.Nll ?? double.NaN)) : tc.Average(c => c.Score);
            }
            var needle = mine.Where(c => c.Task != RulerTasks.Perplexity).ToList();
            double mean = needleTasks.Where(acc.ContainsKey).Select(t => acc[t]).DefaultIfEmpty(double.NaN).Average();
            var byCtx = new Dictionary<string, double>();
            var ciByCtx = new Dictionary<string, Interval>();
            var stepByCtx = new Dictionary<string, double>();
            foreach (int ctx in grid.Contexts)
            {
                var nc = needle.Where(c => c.Context == ctx).ToList();
                if (nc.Count > 0)
                    byCtx[Ctx(ctx)] = needleTasks.Select(t => nc.Where(c => c.Task == t).Select(c => c.Score).DefaultIfEmpty(double.NaN).Average())
                        .Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
                if (nc.Count > 0) ciByCtx[Ctx(ctx)] = Interval.Wilson(byCtx[Ctx(ctx)], nc.Count);
                var sc = mine.Where(c => c.Context == ctx).Select(c => c.StepMs).Order().ToList();
                if (sc.Count > 0) stepByCtx[Ctx(ctx)] = sc[sc.Count / 2];
            }
            var atLongest = mine.Where(c => c.Context == longest).ToList();
            var ratios = atLongest.Where(c => dense.ContainsKey((c.Task, c.Context, c.Sample)))
                .Select(c => dense[(c.Task, c.Context, c.Sample)].StepMs / Math.Max(1e-9, c.StepMs)).ToList();
            var attended = mine.Where(c => dense.ContainsKey((c.Task, c.Context, c.Sample)))
                .Select(c => c.KeysAttendedPerStep / Math.Max(1e-9, dense[(c.Task, c.Context, c.Sample)].KeysAttendedPerStep)).ToList();
            var attRatios = atLongest.Where(c => dense.ContainsKey((c.Task, c.Context, c.Sample)))
                .Select(c => dense[(c.Task, c.Context, c.Sample)].AttendMsPerStep / Math.Max(1e-9, c.AttendMsPerStep + c.SelectMsPerStep)).ToList();
            var row = new MethodSummary
            {
                Method = pair.Method,
                Budget = pair.Budget,
                Label = pair.ToString(),
                Accuracy = acc,
                MeanAccuracy = mean,
                MeanAccuracyStdErr = StdErr(needle.Select(c => c.Score).ToList()),
                NeedleCells = needle.Count,
                MeanAccuracyCi = Interval.Wilson(mean, needle.Count),
                AccuracyCiByContext = ciByCtx,
                MassRecallCi = Interval.OfMean(mine.Select(c => c.MassRecall).Where(double.IsFinite).ToList()),
                Perplexity = acc.TryGetValue(RulerTasks.Perplexity, out double ppl) ? ppl : null,
                CodeExactMatch = mine.Where(c => c.Task == RulerTasks.CodeCompletion).Select(c => c.Exact ? 1.0 : 0).ToList() is { Count: > 0 } em ? em.Average() : null,
                AccuracyByContext = byCtx,
                BudgetShare = mine.Average(c => c.BudgetTokens / (double)Math.Max(1, c.PromptTokens)),
                MassRecall = MeasuredMean(mine.Select(c => c.MassRecall)),
                TopKRecall = MeasuredMean(mine.Select(c => c.TopKRecall)),
                OutputError = MeasuredMean(mine.Select(c => c.OutputError)),
                KeysScoredPerStep = MeasuredMean(mine.Select(c => c.KeysScoredPerStep)),
                KeysAttendedPerStep = MeasuredMean(mine.Select(c => c.KeysAttendedPerStep)),
                AttendedOfDense = attended.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average() is var a && double.IsFinite(a) ? a : null,
                SelectMsPerStep = MeasuredMean(atLongest.Select(c => c.SelectMsPerStep)),
                AttendMsPerStep = MeasuredMean(atLongest.Select(c => c.AttendMsPerStep)),
                StepMsByContext = stepByCtx,
                SpeedUp = ratios.Count > 0 ? Math.Exp(ratios.Average(Math.Log)) : null,
                AttentionSpeedUp = attRatios.Where(double.IsFinite).ToList() is { Count: > 0 } ar ? Math.Exp(ar.Average(Math.Log)) : null,
                Cells = mine.Count,
                Lossless = LosslessSummary.Of(needle, dense, TaskMean),
                LosslessByTask = needleTasks.Select(t => (t, LosslessSummary.Of(needle.Where(c => c.Task == t).ToList(), dense, TaskMean)))
                    .Where(x => x.Item2 is not null).ToDictionary(x => x.t, x => x.Item2!) is { Count: > 0 } byTask ? byTask : null,
            };
            rows.Add(row);
        }
        return rows.Select(r => Paired(r, cells)).ToList();
    }

    /// <summary>The row with its paired comparisons against dense and against the oracle at its budget.</summary>
    private static MethodSummary Paired(MethodSummary row, IReadOnlyList<CellResult> cells)
    {
        if (row.Budget == MethodBudget.NoBudget) return row with { OfDense = double.IsFinite(row.MeanAccuracy) ? 1 : null };
        var mine = cells.Where(c => c.Method == row.Method && c.Budget == row.Budget).ToList();
        var dense = cells.Where(c => c.Budget == MethodBudget.NoBudget && c.Method == EvalGrid.DenseMethod).ToList();
        var oracle = cells.Where(c => c.Method == OracleMethod && c.Budget == row.Budget).ToList();
        var vsDense = PairedComparison.Compare(mine, dense, EvalGrid.DenseMethod);
        static List<CellResult> Code(List<CellResult> cs) => cs.Where(c => c.Task == RulerTasks.CodeCompletion).ToList();
        return row with
        {
            VsDense = vsDense,
            CodeExactMatchVsDense = PairedComparison.Compare(Code(mine), Code(dense), EvalGrid.DenseMethod, score: c => c.Exact ? 1 : 0)?.Mean,
            OfDense = vsDense is { Mean.Ratio: var ratio } && double.IsFinite(ratio) ? ratio : null,
            VsOracle = row.Method == OracleMethod ? null : PairedComparison.Compare(mine, oracle, new MethodBudget(OracleMethod, row.Budget).ToString()),
        };
    }
}
