using System.Globalization;
using System.Security;
using System.Text;

namespace SparseDecode.Evaluation;

/// <summary>One line of a chart: points joined in x order, with a colour and an optional dash.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<(double X, double Y)> Points, string Color, bool Dashed = false);

/// <summary>A line chart as standalone SVG: axes with rounded ticks (linear, or log2 for context lengths), grid
/// lines, one polyline with markers per series, a legend on the right. Plain SVG 1.1 that any browser or
/// rsvg-convert renders.</summary>
public sealed class SvgLineChart
{
    public required string Title { get; init; }
    public required string XLabel { get; init; }
    public required string YLabel { get; init; }
    public bool LogX { get; init; }
    public double? YMin { get; init; }
    public double? YMax { get; init; }
    public int Width { get; init; } = 720;
    public int Height { get; init; } = 420;
    /// <summary>Formats x tick labels (default: up to 3 significant digits).</summary>
    public Func<double, string>? XFormat { get; init; }
    /// <summary>Pixels each series' markers are shifted sideways from the previous one's, so that series sharing
    /// x values (one budget) stay visible side by side.</summary>
    public double Dodge { get; init; }
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
        _ => Palette[(int)((uint)StableHash(method) % (uint)Palette.Length)],
    };

    private static readonly string[] Palette = ["#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939"];

    private static int StableHash(string s)
    {
        int h = 17;
        foreach (char c in s) h = h * 31 + c;
        return h;
    }

    private static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    public static string Esc(string s) => SecurityElement.Escape(s) ?? "";

    public string Render()
    {
        const int left = 70, top = 40, bottom = 56, legendWidth = 170;
        int plotW = Width - left - legendWidth - 20, plotH = Height - top - bottom;
        var pts = Series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y) && (!LogX || p.X > 0)).ToList();
        double xmin = pts.Count > 0 ? pts.Min(p => p.X) : 0, xmax = pts.Count > 0 ? pts.Max(p => p.X) : 1;
        double ymin = YMin ?? (pts.Count > 0 ? Math.Min(0, pts.Min(p => p.Y)) : 0);
        double ymax = YMax ?? (pts.Count > 0 ? pts.Max(p => p.Y) : 1);
        if (ymax <= ymin) ymax = ymin + 1;
        double[] yTicks = NiceTicks(ymin, ymax, 6);
        if (YMax is null) ymax = Math.Max(ymax, yTicks[^1]);
        double[] xTicks;
        if (LogX)
        {
            double l0 = Math.Floor(Math.Log2(xmin)), l1 = Math.Ceiling(Math.Log2(xmax));
            if (l1 <= l0) { l0 -= 0.5; l1 += 0.5; }
            xTicks = Enumerable.Range((int)Math.Ceiling(l0), (int)(Math.Floor(l1) - Math.Ceiling(l0)) + 1).Select(e => Math.Pow(2, e)).ToArray();
            xmin = Math.Pow(2, l0);
            xmax = Math.Pow(2, l1);
        }
        else
        {
            if (xmax <= xmin) { xmin -= 1; xmax += 1; }
            xTicks = NiceTicks(xmin, xmax, 7);
            double pad = (xmax - xmin) * 0.04;
            xmin = Math.Min(xmin - pad, xTicks[0]);
            xmax = Math.Max(xmax + pad, xTicks[^1]);
            xTicks = xTicks.Where(t => t >= xmin && t <= xmax).ToArray();
        }
        double X(double x) => left + plotW * (LogX ? (Math.Log2(x) - Math.Log2(xmin)) / (Math.Log2(xmax) - Math.Log2(xmin)) : (x - xmin) / (xmax - xmin));
        double Y(double y) => top + plotH * (1 - (y - ymin) / (ymax - ymin));
        var xf = XFormat ?? (v => v.ToString("G3", CultureInfo.InvariantCulture));

        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n");
        sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"0\" y=\"0\" width=\"{Width}\" height=\"{Height}\" fill=\"#ffffff\"/>\n");
        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{Width / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{Esc(Title)}</text>\n");
        // grid and ticks
        foreach (double t in yTicks.Where(t => t >= ymin - 1e-12 && t <= ymax + 1e-12))
        {
            sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" y1=\"{F(Y(t))}\" x2=\"{left + plotW}\" y2=\"{F(Y(t))}\" stroke=\"#e5e5e5\"/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{left - 6}\" y=\"{F(Y(t) + 4)}\" text-anchor=\"end\">{Esc(t.ToString("G4", CultureInfo.InvariantCulture))}</text>\n");
        }
        foreach (double t in xTicks)
        {
            sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{F(X(t))}\" y1=\"{top}\" x2=\"{F(X(t))}\" y2=\"{top + plotH}\" stroke=\"#f0f0f0\"/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(X(t))}\" y=\"{top + plotH + 18}\" text-anchor=\"middle\">{Esc(xf(t))}</text>\n");
        }
        sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left}\" y=\"{top}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"#444444\"/>\n");
        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{left + plotW / 2}\" y=\"{Height - 14}\" text-anchor=\"middle\">{Esc(XLabel)}</text>\n");
        sb.Append(CultureInfo.InvariantCulture, $"<text transform=\"translate(18 {top + plotH / 2}) rotate(-90)\" text-anchor=\"middle\">{Esc(YLabel)}</text>\n");
        // series
        int li = 0;
        foreach (var s in Series)
        {
            double shift = s.Dashed ? 0 : Dodge * (li - (Series.Count - 1) / 2.0);
            double Xs(double x) => X(x) + shift;
            var p = s.Points.Where(q => double.IsFinite(q.X) && double.IsFinite(q.Y) && (!LogX || q.X > 0)).OrderBy(q => q.X).ToList();
            string dash = s.Dashed ? " stroke-dasharray=\"6 4\"" : "";
            sb.Append(CultureInfo.InvariantCulture, $"<g><title>{Esc(s.Name)}</title>\n");
            if (p.Count > 1)
                sb.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{s.Color}\" stroke-width=\"2\"{dash} points=\"{string.Join(' ', p.Select(q => F(Xs(q.X)) + "," + F(Y(q.Y))))}\"/>\n");
            foreach (var q in p)
                sb.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{F(Xs(q.X))}\" cy=\"{F(Y(q.Y))}\" r=\"3.5\" fill=\"{s.Color}\"/>\n");
            sb.Append("</g>\n");
            double ly = top + 10 + li * 20;
            int lx = left + plotW + 16;
            sb.Append(CultureInfo.InvariantCulture, $"<line x1=\"{lx}\" y1=\"{F(ly)}\" x2=\"{lx + 24}\" y2=\"{F(ly)}\" stroke=\"{s.Color}\" stroke-width=\"2\"{dash}/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{lx + 12}\" cy=\"{F(ly)}\" r=\"3.5\" fill=\"{s.Color}\"/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{lx + 30}\" y=\"{F(ly + 4)}\">{Esc(s.Name)}</text>\n");
            li++;
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    /// <summary>About `count` ticks at 1, 2 or 5 × 10^k covering [lo, hi].</summary>
    public static double[] NiceTicks(double lo, double hi, int count)
    {
        if (!(hi > lo)) hi = lo + 1;
        double raw = (hi - lo) / Math.Max(1, count - 1);
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 2.5, 5, 10 }.Select(m => m * mag).First(s => s >= raw);
        double start = Math.Floor(lo / step) * step, end = Math.Ceiling(hi / step) * step;
        var ticks = new List<double>();
        for (long k = (long)Math.Round(start / step); k * step <= end + step * 1e-9; k++)
            ticks.Add(double.Parse((k * step).ToString("G12", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)); // 0.6, not 0.6000000000000001
        return ticks.ToArray();
    }
}
