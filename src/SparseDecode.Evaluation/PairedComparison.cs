using System.Globalization;

namespace SparseDecode.Evaluation;

/// <summary>A method's needle-task scores minus a reference's on the same samples: the mean difference with its
/// paired bootstrap interval and the paired test of "no difference".</summary>
public sealed record PairedDifference
{
    /// <summary>Samples both scored (cells of the method with a cell of the reference on the same prompt).</summary>
    public required int Pairs { get; init; }
    /// <summary>Mean of method − reference over the pairs, a fraction (−0.05: five points below the reference). On
    /// a complete grid it is the difference of the two rows' mean accuracies.</summary>
    public required double Estimate { get; init; }
    /// <summary>Paired stratified bootstrap 95% interval of Estimate (<see cref="PairedStatistics.Bootstrap"/>).</summary>
    public required Interval Ci { get; init; }
    /// <summary>The paired test (<see cref="PairedStatistics.Test"/>): exact McNemar where every score is 0 or 1,
    /// else the sign-flip permutation test.</summary>
    public required string Test { get; init; }
    /// <summary>Its two-sided p-value.</summary>
    public required double P { get; init; }
    /// <summary>Pairs where the method scored above the reference (McNemar's b for 0/1 scores).</summary>
    public required int Higher { get; init; }
    /// <summary>Pairs where the method scored below the reference (McNemar's c).</summary>
    public required int Lower { get; init; }
    /// <summary>Mean of the squared differences: the discordance rate (b + c) ÷ pairs for 0/1 scores, and what
    /// <see cref="PairedStatistics.SampleSize"/> plans with.</summary>
    public required double SecondMoment { get; init; }

    /// <summary>Σ method ÷ Σ reference over the pairs — the "% of dense" when the reference is dense (NaN when the
    /// reference scored nothing).</summary>
    public required double Ratio { get; init; }
    /// <summary>Bootstrap 95% interval of Ratio, from the same resamples as <see cref="Ci"/>.</summary>
    public required Interval RatioCi { get; init; }

    public static PairedDifference Of(IReadOnlyList<ScorePair> pairs, int seed = PairedStatistics.DefaultSeed)
    {
        var d = pairs.Select(p => p.Difference).ToList();
        var (test, p) = PairedStatistics.Test(d, seed);
        var (ci, ratioCi) = PairedStatistics.Bootstrap(pairs, seed);
        return new PairedDifference
        {
            Pairs = pairs.Count,
            Estimate = PairedStatistics.MeanDifference(pairs),
            Ci = ci,
            Ratio = PairedStatistics.Ratio(pairs),
            RatioCi = ratioCi,
            Test = test,
            P = p,
            Higher = d.Count(x => x > 0),
            Lower = d.Count(x => x < 0),
            SecondMoment = d.Count == 0 ? double.NaN : d.Sum(x => x * x) / d.Count,
        };
    }
}

/// <summary>One (method, budget) row against a reference row — dense attention, or the oracle top-k at the same
/// budget — paired by sample: every method decodes the same prompt from the same dense prefill, so the two scores
/// of a sample share its difficulty and their difference is measured far more precisely than either score alone.
/// Holds the mean needle-task difference and the ratio of the means (the "% of dense"), each with its interval, the
/// same per task and per context, and the samples a 5-point difference would need.</summary>
public sealed record PairedComparison
{
    /// <summary>The difference a grid should be able to detect: 5 points of accuracy.</summary>
    public const double DetectableDifference = 0.05;
    public const double Alpha = 0.05;
    public const double Power = 0.8;

    /// <summary>The reference row's label: "dense" or "oracle@5%".</summary>
    public required string Reference { get; init; }
    /// <summary>Over every needle task and context.</summary>
    public required PairedDifference Mean { get; init; }
    /// <summary>Pairs a two-sided test at α = 0.05 needs to detect a 5-point difference with 80% power, planned with
    /// this comparison's own second moment of the differences (<see cref="PairedStatistics.SampleSize"/>; where every
    /// score is 0 or 1, with a discordance rate of at least 5%, the least at which 0/1 scores can differ by 5 points).</summary>
    public required int PairsFor5Points { get; init; }
    /// <summary>PairsFor5Points spread over the grid's task × context strata: the samples per task and context
    /// (`--samples`) that reach it.</summary>
    public required int SamplesFor5Points { get; init; }
    public required Dictionary<string, PairedDifference> ByTask { get; init; }
    /// <summary>Keyed by the context length as text.</summary>
    public required Dictionary<string, PairedDifference> ByContext { get; init; }

    /// <summary>Pairs the method's needle-task cells with the reference's by (task, context, sample) and compares
    /// them; null when no cell pairs. Cells whose prompt fingerprints differ were not decoded from the same prompt
    /// (a store filled by another version of the prompt generator): they are refused, not paired. `score` is what
    /// is compared (the cell's task score unless given: code completion's exact match compares its 0/1
    /// <see cref="CellResult.Exact"/>).</summary>
    public static PairedComparison? Compare(IReadOnlyList<CellResult> method, IReadOnlyList<CellResult> reference, string referenceLabel,
        int seed = PairedStatistics.DefaultSeed, Func<CellResult, double>? score = null)
    {
        score ??= c => c.Score;
        var refs = reference.Where(c => c.Task != RulerTasks.Perplexity).ToDictionary(c => (c.Task, c.Context, c.Sample));
        var pairs = new List<(CellResult Cell, ScorePair Pair)>();
        foreach (var c in method.Where(c => c.Task != RulerTasks.Perplexity))
        {
            if (!refs.TryGetValue((c.Task, c.Context, c.Sample), out var r)) continue;
            if (c.PromptFingerprint is { } a && r.PromptFingerprint is { } b && a != b)
                throw new InvalidDataException(string.Create(CultureInfo.InvariantCulture,
                    $"{c.Method}@{c.Budget} and {referenceLabel} decoded different prompts for {c.Task} @ {c.Context} #{c.Sample} (cells from different versions of the prompt generator); run the grid again with --fresh."));
            pairs.Add((c, new ScorePair($"{c.Task}@{EvalSummary.Ctx(c.Context)}", score(c), score(r))));
        }
        if (pairs.Count == 0) return null;
        var all = pairs.Select(p => p.Pair).ToList();
        var mean = PairedDifference.Of(all, seed);
        int strata = all.Select(p => p.Stratum).Distinct().Count();
        // planned with the observed second moment; 0/1 scores cannot differ by δ with a discordance rate below δ
        bool zeroOne = all.All(p => p.Difference is -1 or 0 or 1);
        double plan = zeroOne ? Math.Max(mean.SecondMoment, DetectableDifference) : mean.SecondMoment;
        int needed = PairedStatistics.SampleSize(plan, DetectableDifference, Alpha, Power);
        return new PairedComparison
        {
            Reference = referenceLabel,
            Mean = mean,
            PairsFor5Points = needed,
            SamplesFor5Points = (needed + strata - 1) / strata,
            ByTask = pairs.GroupBy(p => p.Cell.Task).ToDictionary(g => g.Key, g => PairedDifference.Of(g.Select(p => p.Pair).ToList(), seed)),
            ByContext = pairs.GroupBy(p => p.Cell.Context).OrderBy(g => g.Key)
                .ToDictionary(g => EvalSummary.Ctx(g.Key), g => PairedDifference.Of(g.Select(p => p.Pair).ToList(), seed)),
        };
    }
}
