using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>Rows are compared with dense and with the oracle sample by sample: cells pair by task, context and
/// sample, cells of different prompts are refused, and the report and results carry the paired figures.</summary>
public class PairedComparisonTests
{
    private static CellResult Cell(string method, string budget, string task, int context, int sample, double score, string? fingerprint = null) =>
        ReportTests.Cell($"{method}|{budget}|{task}|{context}|{sample}", score) with
        {
            Method = method, Budget = budget, Task = task, Context = context, Sample = sample, PromptFingerprint = fingerprint,
        };

    [Fact]
    public void CellsPairBySampleAndTheDifferenceIsTheirMean()
    {
        // passkey at two contexts, 4 samples each: the method misses sample 0 at 1024 and sample 3 at 2048, where
        // dense is right, and gets sample 1 at 2048, where dense is wrong; a perplexity cell and an unpaired cell are ignored
        var dense = new List<CellResult>();
        var method = new List<CellResult>();
        foreach (int ctx in new[] { 1024, 2048 })
            for (int s = 0; s < 4; s++)
            {
                dense.Add(Cell("dense", "-", RulerTasks.Passkey, ctx, s, ctx == 2048 && s == 1 ? 0 : 1, $"f{ctx}{s}"));
                bool right = !(ctx == 1024 && s == 0) && !(ctx == 2048 && s == 3);
                method.Add(Cell("lfps", "5%", RulerTasks.Passkey, ctx, s, right ? 1 : 0, $"f{ctx}{s}"));
            }
        method.Add(Cell("lfps", "5%", RulerTasks.Perplexity, 1024, 0, 0));
        method.Add(Cell("lfps", "5%", RulerTasks.Passkey, 1024, 9, 1));
        var c = PairedComparison.Compare(method, dense, "dense")!;
        Assert.Equal(8, c.Mean.Pairs);
        Assert.Equal((1, 2), (c.Mean.Higher, c.Mean.Lower));
        Assert.Equal(-1 / 8.0, c.Mean.Estimate, 12);
        Assert.Equal(PairedStatistics.McNemarTest, c.Mean.Test);
        Assert.Equal(PairedStatistics.McNemarExactP(1, 2), c.Mean.P, 12);
        Assert.Equal(6 / 7.0, c.Mean.Ratio, 12); // 6 right against dense's 7
        Assert.InRange(c.Mean.Estimate, c.Mean.Ci.Low, c.Mean.Ci.High);
        Assert.Equal(["1024", "2048"], c.ByContext.Keys);
        Assert.Equal(-1 / 4.0, c.ByContext["1024"].Estimate, 12);
        Assert.Equal(0, c.ByContext["2048"].Estimate, 12);
        // 0/1 scores with 3 discordant of 8: planned at ψ = 3/8 → ⌈(1.96 √0.375 + 0.84 √0.3725)² / 0.0025⌉ pairs, over 2 strata
        Assert.Equal(3 / 8.0, c.Mean.SecondMoment, 12);
        Assert.Equal(PairedStatistics.SampleSize(0.375, 0.05), c.PairsFor5Points);
        Assert.Equal((c.PairsFor5Points + 1) / 2, c.SamplesFor5Points);
        Assert.Null(PairedComparison.Compare(method, [], "dense"));
    }

    /// <summary>Code completion's scores are continuous (edit similarity): the test is the sign-flip permutation test
    /// of the differences, not McNemar, and the estimate their mean; its exact match pairs as 0/1 scores.</summary>
    [Fact]
    public void ContinuousScoresUseTheSignFlipTestOfTheirDifferences()
    {
        double[] dense = [0.5, 0.6, 0.5, 0.9, 0.4];
        double[] lfps = [0.8, 0.8, 0.75, 0.85, 0.4]; // differences +0.3, +0.2, +0.25, −0.05, 0
        var d = dense.Select((x, i) => Cell("dense", "-", RulerTasks.CodeCompletion, 4096, i, x) with { Exact = x >= 0.9 }).ToList();
        var m = lfps.Select((x, i) => Cell("lfps", "5%", RulerTasks.CodeCompletion, 4096, i, x) with { Exact = x >= 0.9 }).ToList();
        var c = PairedComparison.Compare(m, d, "dense")!;
        Assert.Equal(0.7 / 5, c.Mean.Estimate, 12);
        Assert.Equal(PairedStatistics.SignFlipTest, c.Mean.Test);
        // of the 16 sign assignments to the 4 non-zero differences, ±(0.3 + 0.2 + 0.25 ∓ 0.05) reach |0.7|
        Assert.Equal(4 / 16.0, c.Mean.P, 12);
        Assert.Equal((3, 1), (c.Mean.Higher, c.Mean.Lower));
        Assert.InRange(c.Mean.Estimate, c.Mean.Ci.Low, c.Mean.Ci.High);
        var exact = PairedComparison.Compare(m, d, "dense", score: x => x.Exact ? 1 : 0)!;
        Assert.Equal(PairedStatistics.McNemarTest, exact.Mean.Test);
        Assert.Equal(-1 / 5.0, exact.Mean.Estimate, 12); // dense alone matched sample 3
        Assert.Equal(PairedStatistics.McNemarExactP(0, 1), exact.Mean.P, 12);
    }

    [Fact]
    public void CellsOfDifferentPromptsAreRefused()
    {
        var dense = new[] { Cell("dense", "-", RulerTasks.Passkey, 1024, 0, 1, "aaaa") };
        var method = new[] { Cell("lfps", "5%", RulerTasks.Passkey, 1024, 0, 1, "bbbb") };
        var e = Assert.Throws<InvalidDataException>(() => PairedComparison.Compare(method, dense, "dense"));
        Assert.Contains("passkey @ 1024 #0", e.Message);
        // cells stored before fingerprints were recorded still pair
        Assert.NotNull(PairedComparison.Compare([method[0] with { PromptFingerprint = null }], dense, "dense"));
    }

    [Fact]
    public void SummaryComparesEveryRowWithDenseAndWithTheOracleAtItsBudget()
    {
        var grid = new EvalGrid { Methods = ["dense", "oracle", "lfps"], Budgets = ["5%"], Contexts = [1024], Tasks = [RulerTasks.Passkey, RulerTasks.MultiValue], Samples = 4 };
        var cells = new List<CellResult>();
        foreach (var pair in grid.Pairs)
            foreach (string task in grid.Tasks)
                for (int s = 0; s < grid.Samples; s++)
                {
                    double score = pair.Method switch { "dense" => 1, "oracle" => s < 3 ? 1 : 0.5, _ => s < 2 ? 1 : 0.75 };
                    cells.Add(Cell(pair.Method, pair.Budget, task, 1024, s, score));
                }
        var rows = EvalSummary.Summarize(cells, grid).ToDictionary(r => r.Label);
        Assert.Null(rows["dense"].VsDense);
        Assert.Equal(1, rows["dense"].OfDense);
        var lfps = rows["lfps@5%"];
        Assert.Equal(0.875, lfps.OfDense!.Value, 12);
        Assert.Equal(lfps.MeanAccuracy / rows["dense"].MeanAccuracy, lfps.OfDense!.Value, 12);
        Assert.Equal(-0.125, lfps.VsDense!.Mean.Estimate, 12);
        Assert.Equal("oracle@5%", lfps.VsOracle!.Reference);
        Assert.Equal(0.875 - 0.875, lfps.VsOracle.Mean.Estimate, 12); // 1, 1, .75, .75 against 1, 1, 1, .5
        Assert.Equal(PairedStatistics.SignFlipTest, lfps.VsOracle.Mean.Test);
        Assert.Null(rows["oracle@5%"].VsOracle);
        Assert.NotNull(rows["oracle@5%"].VsDense);
        Assert.Equal(["multivalue", "passkey"], lfps.VsDense.ByTask.Keys.Order());
    }
}
