using System.Xml.Linq;
using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>The charts carry what the data asks for (intervals, every budget, dense as a reference, the causal mask
/// apart from unattended keys), the plots are written as PNG and SVG, and the store resumes by key.</summary>
public class ReportTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    private static readonly EvalGrid Grid = new()
    {
        Methods = ["dense", "tidal", "lfps"], Budgets = ["2%", "5%"], Contexts = [1024, 2048], Tasks = [RulerTasks.Passkey], Samples = 4,
    };

    /// <summary>Cells of the grid above: dense always right, tidal right in 1 of 4 samples, lfps in 3 of 4.</summary>
    private static List<CellResult> GridCells()
    {
        var cells = new List<CellResult>();
        foreach (var pair in Grid.Pairs)
            foreach (int ctx in Grid.Contexts)
                for (int s = 0; s < Grid.Samples; s++)
                {
                    double score = pair.Method switch { "dense" => 1, "tidal" => s == 0 ? 1 : 0, _ => s < 3 ? 1 : 0 };
                    int prompt = Grid.PromptLength(ctx);
                    cells.Add(Cell($"{pair}|{ctx}|{s}", score) with
                    {
                        Method = pair.Method, Budget = pair.Budget, Context = ctx, Sample = s, PromptTokens = prompt,
                        BudgetTokens = pair.IsDense ? prompt : (int)(prompt * (pair.Budget == "2%" ? 0.02 : 0.05)),
                        StepMs = pair.IsDense ? 4 : 2, MassRecall = pair.IsDense ? 1 : 0.7 + 0.01 * s, KeysAttendedPerStep = 100,
                    });
                }
        return cells;
    }

    [Fact]
    public void WilsonIntervalMatchesTheFormulaAndStaysInsideZeroToOne()
    {
        var half = Interval.Wilson(0.5, 10);
        Assert.Equal(0.2366, half.Low, 3);
        Assert.Equal(0.7634, half.High, 3);
        var all = Interval.Wilson(1, 4); // 4 of 4 right: not a zero-width interval
        Assert.Equal(0.510, all.Low, 3);
        Assert.Equal(1, all.High, 9);
        Assert.False(Interval.Wilson(0.5, 0).IsFinite);
    }

    [Fact]
    public void BudgetChartDrawsDenseAsAReferenceLineAndEveryBudgetWithItsInterval()
    {
        var rows = EvalSummary.Summarize(GridCells(), Grid);
        var chart = ReportWriter.AccuracyChart(rows);
        var dense = Assert.Single(chart.Series, s => s.Reference);
        Assert.StartsWith("dense", dense.Name);
        Assert.Equal(100, dense.Points[0].Y, 6); // percent of itself, the line every pair is measured against
        Assert.False(dense.Points[0].HasInterval);
        var sparse = chart.Series.Where(s => !s.Reference).ToList();
        Assert.Equal(["tidal", "lfps"], sparse.Select(s => s.Name));
        Assert.All(sparse, s => Assert.Equal(2, s.Points.Count));
        Assert.All(sparse.SelectMany(s => s.Points), p => Assert.True(p.HasInterval && p.Low <= p.Y && p.Y <= p.High));
        // the points are % of dense with the paired interval: tidal right in 2 of 8, lfps in 6 of 8, dense in all
        Assert.Equal([25.0, 25.0, 75.0, 75.0], sparse.SelectMany(s => s.Points).Select(p => Math.Round(p.Y, 9)));
        var tidal = rows.First(r => r.Label == "tidal@2%");
        Assert.Equal(tidal.VsDense!.Mean.RatioCi.High * 100, sparse[0].Points[0].High, 9);
        // the axis is ticked at both budgets, labelled as given, and no tick sits at 0% budget
        Assert.Equal(["2%", "5%"], chart.XTicks.Select(chart.XFormat));
        Assert.DoesNotContain(0.0, chart.XTicks);
    }

    [Fact]
    public void StepTimeChartShowsEveryBudget()
    {
        var rows = EvalSummary.Summarize(GridCells(), Grid);
        var chart = ReportWriter.StepTimeChart(rows, Grid, []);
        Assert.Equal(Grid.Pairs.Count, chart.Series.Count);
        Assert.Contains(chart.Series, s => s.Name == "lfps@5%" && s.Style == 1);
        Assert.Equal(["1K", "2K"], chart.XTicks.Select(chart.XFormat));
    }

    [Fact]
    public void HeatmapTellsBelowFloorFromTheCausalMask()
    {
        int steps = 4, window = 8;
        var recent = new float[steps][];
        var binned = new float[steps][];
        for (int s = 0; s < steps; s++)
        {
            recent[s] = new float[window];
            recent[s][0] = 0.5f;
            binned[s] = [0.5f, 0, 0, 0];
        }
        // prompt 100 tokens, 104 positions: step s sees keys 0 .. 100 + s
        var h = new HeatmapData { Model = "m", Layer = 0, Head = 0, PromptTokens = 100, Positions = 104, Bins = 4, WindowStart = 96, Binned = binned, Window = recent };
        var g = AttentionHeatmap.Window(h);
        Assert.Equal(Math.Log10(0.5), g[0, 0], 6);
        Assert.Equal(Math.Log10(AttentionHeatmap.Floor), g[0, 1]); // key 97 at step 0: visible, never attended
        Assert.Equal(Math.Log10(AttentionHeatmap.Floor), g[0, 4]); // key 100: the query itself
        Assert.True(double.IsNaN(g[0, 5]));                          // key 101: after the query, masked
        Assert.False(double.IsNaN(g[3, 7]));                         // key 103 at step 3: the query itself
        Assert.False(double.IsNaN(AttentionHeatmap.Binned(h)[0, 3])); // bin 3 starts at key 78
        using var tmp = new Fixtures.TempDir();
        var files = PlotFiles.Save(AttentionHeatmap.Recent(h, "t"), tmp.Path, "heat", 400, 300);
        Assert.All(files, f => Assert.True(new FileInfo(f).Length > 0));
    }

    [Fact]
    public void ReportWritesPngAndSvgPlotsEmbedsThePngsAndRerendersFromResultsJson()
    {
        using var tmp = new Fixtures.TempDir();
        var cells = GridCells();
        var results = new EvalResultsFile
        {
            Command = "sparsedecode eval", Model = "m", Machine = "test", Created = "now", WallSeconds = 1,
            Grid = GridDescription.Of(Grid), Summary = EvalSummary.Summarize(cells, Grid), Cells = cells,
        };
        new ReportWriter(tmp.Path).WriteAll(results, Grid, null);
        string md = File.ReadAllText(Path.Combine(tmp.Path, "report.md"));
        foreach (string plot in new[] { ReportWriter.AccuracyPlot, ReportWriter.RecallPlot, ReportWriter.StepTimePlot })
        {
            Assert.Contains($"]({plot}.png)", md);
            byte[] png = File.ReadAllBytes(Path.Combine(tmp.Path, plot + ".png"));
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
            Assert.Equal(Svg + "svg", XDocument.Load(Path.Combine(tmp.Path, plot + ".svg")).Root!.Name);
        }
        Assert.Contains("mean [95% Wilson CI]", md);
        Assert.Contains("100.0 [", md);
        // the paired section: tidal right in 2 of 8 pairs where dense is right in all, so -75 points, McNemar p = 2 / 2^6
        Assert.Contains("### Paired differences to dense and to the oracle", md);
        Assert.Contains("| tidal | 2% | 8 | -75.0 [", md);
        Assert.Contains("| 0.031 | 0 / 6 | 25.0 [", md);
        Assert.Contains("**Samples for a 5-point difference.**", md);
        Assert.Contains("Difference to dense (points) per context", md);
        // the goal is decided by the paired interval at the longest context: tidal's (25% of dense) lies below 95%,
        // lfps's 75% of dense from 4 samples straddles it
        Assert.Matches(@"\| tidal \| 2% \| 25\.0 \| 25\.0 \[[0-9.]+–[0-9.]+\] \| \*\*no\*\* \|", md);
        Assert.Matches(@"\| lfps \| 2% \| 75\.0 \| 75\.0 \[[0-9.]+–100\.0\] \| not resolved \|", md);

        var stored = StoredReport.Load(tmp.Path);
        Assert.Equal(cells.Count, stored.Results.Cells.Count);
        Assert.Equal(Grid.Pairs, stored.Grid.Pairs);
        Assert.True(stored.Results.Summary[0].MeanAccuracyCi.IsFinite);
        // results.json carries the paired comparisons
        Assert.Contains("\"vs_dense\"", File.ReadAllText(Path.Combine(tmp.Path, "results.json")));
        Assert.Equal(results.Summary[1].VsDense!.Mean.Ci, stored.Results.Summary[1].VsDense!.Mean.Ci);
    }

    [Theory]
    [InlineData(0.1, false)]
    [InlineData(0.9, true)]
    public void TheReportSaysWhenOtherWorkSharedTheCores(double otherCores, bool shared)
    {
        var cells = GridCells();
        var results = new EvalResultsFile
        {
            Command = "sparsedecode eval", Model = "m", Machine = "test", Created = "now", WallSeconds = 1,
            Grid = GridDescription.Of(Grid), Summary = EvalSummary.Summarize(cells, Grid), Cells = cells,
            Load = new MachineLoad(otherCores, 2),
        };
        string md = ReportWriter.Markdown(results, Grid, null);
        Assert.Equal(shared, md.Contains("are not a speed measurement"));
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"kept {otherCores:0.00} of the host's 2 cores"), md);
        using var tmp = new Fixtures.TempDir();
        new ReportWriter(tmp.Path).WriteAll(results, Grid, null);
        Assert.Equal(results.Load, StoredReport.Load(tmp.Path).Results.Load);
    }

    [Fact]
    public void FidelityByLayerAveragesEachLayerOverTheNeedleCells()
    {
        // tidal's cells lose layer 1 more in later samples; lfps's carry no per-layer figures (stored before them)
        var cells = GridCells().Select(c => c.Method != "tidal" ? c : c with
        {
            NeedleRecall = 0.5, NeedleMassRecall = 0.25,
            Layers = [new LayerFidelity(1, 1, 0, 1, 1), new LayerFidelity(0.9 - 0.1 * c.Sample, 0.5, 0.1, 0.2 * c.Sample, 0.1)],
        }).ToList();
        var results = new EvalResultsFile
        {
            Command = "sparsedecode eval", Model = "m", Machine = "test", Created = "now", WallSeconds = 1,
            Grid = GridDescription.Of(Grid), Summary = EvalSummary.Summarize(cells, Grid), Cells = cells,
        };
        string md = ReportWriter.Markdown(results, Grid, null);
        string section = md[md.IndexOf("## Fidelity by layer", StringComparison.Ordinal)..md.IndexOf("## Decode step time", StringComparison.Ordinal)];
        // layer 1 of tidal: mass 0.9, 0.8, 0.7, 0.6 over samples → 0.750; needle recall 0, 0.2, 0.4, 0.6 → 0.300
        Assert.Contains("| tidal | 2% | 100 | 1.000 | 0.750 | 0.715 |", section);
        Assert.Contains("| tidal | 5% | 100 | 1.000 | 0.300 | 0.500 |", section);
        Assert.Contains("| tidal | 2% | passkey | 8 | 25.0 | 0.715 | 0.500 | 0.250 |", section);
        Assert.DoesNotContain("| lfps |", section);
        // without per-layer figures in any cell the section is left out
        var bare = results with { Cells = GridCells() };
        Assert.DoesNotContain("## Fidelity by layer", ReportWriter.Markdown(bare, Grid, null));
    }

    [Fact]
    public void StoreKeepsCellsAcrossInstancesAndSurvivesATornLine()
    {
        using var tmp = new Fixtures.TempDir();
        var store = new ResultStore(tmp.Path);
        store.Add(Cell("a", 0.5));
        store.Add(Cell("b", 1.0));
        // an interrupted write leaves half a line
        File.AppendAllText(Path.Combine(tmp.Path, ResultStore.FileName), "{\"key\":\"c\",\"mod");
        var again = new ResultStore(tmp.Path);
        Assert.Equal(2, again.Count);
        Assert.Equal(0.5, again.Get("a")!.Score);
        again.Add(Cell("c", 0.25));
        var third = new ResultStore(tmp.Path);
        Assert.Equal(3, third.Count);
        Assert.Equal(0.25, third.Get("c")!.Score);
        Assert.Equal(0, new ResultStore(tmp.Path, fresh: true).Count);
    }

    /// <summary>A line with "key": null once made every later run fail with "Value cannot be null" until --fresh.</summary>
    [Fact]
    public void StoreSkipsAndReportsUnreadableLines()
    {
        using var tmp = new Fixtures.TempDir();
        new ResultStore(tmp.Path).Add(Cell("a", 0.5));
        string file = Path.Combine(tmp.Path, ResultStore.FileName);
        string good = File.ReadAllLines(file)[0];
        File.AppendAllLines(file, [good.Replace("\"key\":\"a\"", "\"key\":null"), "null", "[1,2]", "{\"key\":\"z\"}",
            good.Replace("\"score\":", "\"score\":\"high\",\"x\":"), good.Replace("\"task\":", "\"task\":null,\"y\":")]);
        var store = new ResultStore(tmp.Path);
        Assert.Equal(1, store.Count);
        Assert.Equal([2, 3, 4, 5, 6, 7], store.Skipped.Select(s => s.Line));
        Assert.Equal("'key' is null", store.Skipped[0].Reason);
        store.Add(Cell("b", 1.0));
        Assert.Equal(2, new ResultStore(tmp.Path).Count);
    }

    [Fact]
    public void CsvQuotesFieldsWithCommas()
    {
        string csv = ReportWriter.Csv([Cell("k", 1) with { Generated = "1, 2, \"3\"" }]);
        var lines = csv.TrimEnd().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.Contains("\"1, 2, \"\"3\"\"\"", lines[1]);
        Assert.Equal(37, lines[0].Split(',').Length);
        // the lossless column's fields, empty where the cell has none
        string spec = ReportWriter.Csv([Cell("k", 1) with { Speculative = Run(identical: true) }]).TrimEnd().Split('\n')[1];
        Assert.EndsWith(",4,1,,1,123,5,12,9,2.5", spec);
        Assert.EndsWith(",,,,,,,,,", lines[1]);
    }

    private static SpeculativeRun Run(bool identical) => new()
    {
        Draft = "4", IdenticalToDense = identical, FirstDifference = identical ? null : 3, Tokens = 17, Passes = 5, Drafted = 12, Accepted = 9,
        Score = 1, Exact = true, Partial = 1, Generated = "123", MsPerToken = 2.5,
    };

    /// <summary>A speculative answer that is not dense decoding's is a broken guarantee: the report opens its lossless
    /// section by saying so and marks the row; where all are identical it says "lossless: N/N".</summary>
    [Fact]
    public void TheLosslessSectionCountsIdenticalSamplesAndFlagsAMismatch()
    {
        var grid = Grid with { Speculation = new SparseDecode.Selection.SpeculationOptions(4) };
        string Report(Func<CellResult, bool> identical)
        {
            var cells = GridCells().Select(c => c.Method == "dense" ? c : c with { Speculative = Run(identical(c)) }).ToList();
            var rows = EvalSummary.Summarize(cells, grid);
            var results = new EvalResultsFile
            {
                Command = "sparsedecode eval --speculate 4", Model = "m", Machine = "test", Created = "now", WallSeconds = 1,
                Grid = GridDescription.Of(grid), Summary = rows, Cells = cells,
            };
            return ReportWriter.Markdown(results, grid, null);
        }
        string good = Report(_ => true);
        Assert.Contains("**lossless: 32/32 samples identical to dense**", good);
        Assert.DoesNotContain("NOT LOSSLESS", good);
        // 9 of 12 drafts kept over 5 passes: 1.80 per pass, 75%, 2.80 tokens per pass
        Assert.Contains("| tidal | 2% | 4 | 8/8 | 100.0 (100.0) | 1.80 | 75.0% | 2.80 | 40 |", good);
        string bad = Report(c => !(c.Method == "lfps" && c.Budget == "5%" && c.Sample == 2));
        Assert.Contains("> **NOT LOSSLESS: 2 of 32 samples differ from dense decoding**", bad);
        Assert.Contains("| lfps | 5% | 4 | 6/8 **NOT LOSSLESS** |", bad);
    }

    internal static CellResult Cell(string key, double score) => new()
    {
        Key = key, Model = "m", Method = "tidal", Budget = "5%", Context = 1024, Task = "passkey", Sample = 0, Seed = 1, Score = score,
    };
}
