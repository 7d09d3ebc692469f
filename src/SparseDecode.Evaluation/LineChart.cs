using System.Globalization;
using ScottPlot;

namespace SparseDecode.Evaluation;

/// <summary>One point of a series with its 95% interval (NaN bounds: no error bar).</summary>
public readonly record struct ChartPoint(double X, double Y, double Low = double.NaN, double High = double.NaN)
{
    public bool HasInterval => double.IsFinite(Low) && double.IsFinite(High);
}

/// <summary>One line of a chart. A reference series (dense attention, which has no budget) is drawn as a
/// horizontal line at its single value with its interval as a band, not as points on the budget axis. Style picks
/// the marker shape (series of one method at different budgets share a colour); shapes, not dash patterns, because
/// dashes do not survive the SVG export.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<ChartPoint> Points, string Color, bool Reference = false, int Style = 0);

/// <summary>A line chart rendered by ScottPlot to PNG and SVG: series with 95% error bars, reference lines, a log
/// x axis whose ticks are the measured x values (budgets or contexts) labelled as given, so that every value a
/// series was measured at appears on the axis.</summary>
public sealed class LineChart
{
    public required string Title { get; init; }
    public required string XLabel { get; init; }
    public required string YLabel { get; init; }
    /// <summary>Tick label of an x value.</summary>
    public required Func<double, string> XFormat { get; init; }
    public double? YMin { get; init; }
    public double? YMax { get; init; }
    /// <summary>Relative sideways offset between series sharing an x (0.03 = 3% of x on the log axis), so that
    /// their error bars do not hide each other; the caption must say so when it is not 0.</summary>
    public double Dodge { get; init; }
    public int Width { get; init; } = 900;
    public int Height { get; init; } = 500;
    public List<ChartSeries> Series { get; } = [];

    /// <summary>Colours by method so every plot of a report uses the same one for the same method.</summary>
    public static string ColorFor(string method) => method switch
    {
        "dense" => "#222222",
        "oracle" => "#7f7f7f",
        "streaming" => "#d62728",
        "quest" => "#ff7f0e",
        "tidal" => "#1f77b4",
        "lfps" => "#2ca02c",
        "prhs" => "#9467bd",
        "hshare" => "#8c564b",
        _ => Palette[(int)((uint)StableHash(method) % (uint)Palette.Length)],
    };

    private static readonly string[] Palette = ["#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939"];

    private static int StableHash(string s)
    {
        int h = 17;
        foreach (char c in s) h = h * 31 + c;
        return h;
    }

    private static readonly MarkerShape[] Shapes = [MarkerShape.FilledCircle, MarkerShape.OpenSquare, MarkerShape.FilledTriangleUp, MarkerShape.OpenDiamond];

    /// <summary>The x values measured by the non-reference series, ascending: the axis ticks.</summary>
    public IReadOnlyList<double> XTicks =>
        Series.Where(s => !s.Reference).SelectMany(s => s.Points).Select(p => p.X).Where(x => x > 0 && double.IsFinite(x)).Distinct().Order().ToList();

    public Plot ToPlot()
    {
        var plt = new Plot();
        plt.Title(Title);
        plt.XLabel(XLabel);
        plt.YLabel(YLabel);
        var ticks = XTicks;
        var measured = Series.Where(s => !s.Reference).ToList();
        for (int i = 0; i < measured.Count; i++)
        {
            var s = measured[i];
            var color = Color.FromHex(s.Color);
            double shift = Math.Log10(1 + Dodge) * (i - (measured.Count - 1) / 2.0);
            var pts = s.Points.Where(p => p.X > 0 && double.IsFinite(p.Y)).OrderBy(p => p.X).ToList();
            double[] xs = pts.Select(p => Math.Log10(p.X) + shift).ToArray();
            double[] ys = pts.Select(p => p.Y).ToArray();
            var sc = plt.Add.Scatter(xs, ys, color);
            sc.LegendText = s.Name;
            sc.MarkerSize = 8;
            sc.LineWidth = pts.Count > 1 ? 2 : 0; // one point: a marker, as the legend entry below shows
            sc.MarkerShape = Shapes[s.Style % Shapes.Length];
            var withCi = pts.Select((p, k) => (p, k)).Where(t => t.p.HasInterval).ToList();
            if (withCi.Count > 0)
            {
                var eb = new ScottPlot.Plottables.ErrorBar(
                    withCi.Select(t => xs[t.k]).ToList(), withCi.Select(t => t.p.Y).ToList(), null, null,
                    withCi.Select(t => t.p.High - t.p.Y).ToList(), withCi.Select(t => t.p.Y - t.p.Low).ToList())
                { Color = color, LineWidth = 1.5f, CapSize = 5 };
                plt.Add.Plottable(eb);
            }
        }
        foreach (var s in Series.Where(s => s.Reference))
        {
            var color = Color.FromHex(s.Color);
            var p = s.Points[0];
            if (p.HasInterval) plt.Add.VerticalSpan(p.Low, p.High, color.WithAlpha(0.12));
            var line = plt.Add.HorizontalLine(p.Y, 2.5f, color);
            line.LegendText = s.Name;
        }
        if (ticks.Count > 0)
        {
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.Select(Math.Log10).ToArray(), ticks.Select(XFormat).ToArray());
            // half a decade of room either side of the measured values on the log axis (or around a single one)
            double lo = Math.Log10(ticks[0]), hi = Math.Log10(ticks[^1]);
            double pad = Math.Max(0.15, (hi - lo) * 0.08);
            plt.Axes.SetLimitsX(lo - pad, hi + pad);
        }
        if (YMin is double y0 && YMax is double y1) plt.Axes.SetLimitsY(y0, y1);
        else if (YMin is double y0only) plt.Axes.SetLimitsY(y0only, Math.Max(y0only + 1e-9, MaxY() * 1.08));
        plt.ShowLegend(Edge.Right);
        return plt;
    }

    private double MaxY() => Series.SelectMany(s => s.Points).SelectMany(p => new[] { p.Y, p.High }).Where(double.IsFinite).DefaultIfEmpty(1).Max();

    /// <summary>Writes name.png and name.svg into the directory and returns their paths.</summary>
    public IReadOnlyList<string> Save(string directory, string name) => PlotFiles.Save(ToPlot(), directory, name, Width, Height);

    public static string Percent(double v) => v.ToString("0.##", CultureInfo.InvariantCulture) + "%";
}

/// <summary>Saves a ScottPlot plot as PNG (embedded in report.md) and SVG (for print) side by side.</summary>
public static class PlotFiles
{
    public static IReadOnlyList<string> Save(Plot plt, string directory, string name, int width, int height)
    {
        string png = Path.Combine(directory, name + ".png"), svg = Path.Combine(directory, name + ".svg");
        plt.SavePng(png, width, height);
        plt.SaveSvg(svg, width, height);
        return [png, svg];
    }
}
