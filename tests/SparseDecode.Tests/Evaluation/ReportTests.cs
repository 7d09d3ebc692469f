using System.Xml.Linq;
using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>The SVG writers produce well-formed XML with the marks the data asks for; the store resumes by key.</summary>
public class ReportTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    [Fact]
    public void LineChartIsWellFormedSvgWithOneLinePerSeries()
    {
        var chart = new SvgLineChart { Title = "Accuracy <vs> budget & more", XLabel = "budget", YLabel = "accuracy", YMin = 0, YMax = 1 };
        chart.Series.Add(new ChartSeries("tidal", [(1, 0.5), (2, 0.7), (5, 0.9)], SvgLineChart.ColorFor("tidal")));
        chart.Series.Add(new ChartSeries("dense", [(1, 1), (5, 1)], SvgLineChart.ColorFor("dense"), Dashed: true));
        chart.Series.Add(new ChartSeries("q\"uest", [(2, double.NaN), (3, 0.2)], SvgLineChart.ColorFor("quest")));
        var doc = XDocument.Parse(chart.Render());
        Assert.Equal(Svg + "svg", doc.Root!.Name);
        Assert.Equal(2, doc.Descendants(Svg + "polyline").Count()); // the NaN point is dropped, leaving one point for quest
        var tidal = doc.Descendants(Svg + "polyline").First().Attribute("points")!.Value.Split(' ');
        Assert.Equal(3, tidal.Length);
        // y grows downward: 0.9 is drawn above 0.5
        Assert.True(double.Parse(tidal[2].Split(',')[1], System.Globalization.CultureInfo.InvariantCulture) <
                    double.Parse(tidal[0].Split(',')[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Contains(doc.Descendants(Svg + "text"), t => t.Value == "Accuracy <vs> budget & more");
    }

    [Fact]
    public void LogAxisChartIsWellFormed()
    {
        var chart = new SvgLineChart { Title = "t", XLabel = "x", YLabel = "y", LogX = true, YMin = 0 };
        chart.Series.Add(new ChartSeries("dense", [(1024, 5), (2048, 7), (8192, 14)], "#000000"));
        var doc = XDocument.Parse(chart.Render());
        // ticks at 1024, 2048, 4096, 8192
        Assert.Equal(4, doc.Descendants(Svg + "line").Count(l => l.Attribute("stroke")?.Value == "#f0f0f0"));
    }

    [Fact]
    public void HeatmapIsWellFormedAndMergesRuns()
    {
        int steps = 8, bins = 32, window = 16;
        var binned = new float[steps][];
        var recent = new float[steps][];
        for (int s = 0; s < steps; s++)
        {
            binned[s] = new float[bins];
            binned[s][0] = 0.5f;  // a vertical line (sink)
            recent[s] = new float[window];
            recent[s][s] = 0.3f;  // a slash
        }
        var h = new HeatmapData { Model = "m", Layer = 3, Head = 1, PromptTokens = 100, Positions = 108, Bins = bins, WindowStart = 92, Binned = binned, Window = recent };
        var doc = XDocument.Parse(SvgHeatmap.Render(h, "heat & map"));
        var cells = doc.Descendants(Svg + "g").First(g => g.Attribute("shape-rendering") is not null);
        Assert.Equal(steps, cells.Elements(Svg + "rect").Count()); // first panel: one sink cell per row
        Assert.Equal(2, doc.Descendants(Svg + "g").Count(g => g.Attribute("shape-rendering") is not null));
        Assert.Equal(0, SvgHeatmap.Level(1e-5));
        Assert.True(SvgHeatmap.Level(0.5) > SvgHeatmap.Level(0.01));
    }

    [Fact]
    public void NiceTicksCoverTheRangeWithRoundSteps()
    {
        Assert.Equal([0, 0.2, 0.4, 0.6, 0.8, 1.0], SvgLineChart.NiceTicks(0, 1, 6));
        var t = SvgLineChart.NiceTicks(3.2, 47, 6);
        Assert.True(t[0] <= 3.2 && t[^1] >= 47);
        Assert.Equal(10, t[1] - t[0], 9);
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
        Assert.Equal(27, lines[0].Split(',').Length);
    }

    internal static CellResult Cell(string key, double score) => new()
    {
        Key = key, Model = "m", Method = "tidal", Budget = "5%", Context = 1024, Task = "passkey", Sample = 0, Seed = 1, Score = score,
    };
}
