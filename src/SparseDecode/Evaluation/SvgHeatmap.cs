using System.Globalization;
using System.Text;

namespace SparseDecode.Evaluation;

/// <summary>The attention-pattern heat map as SVG: query step (rows) × key position (columns), probability on a
/// log colour scale, in two panels — the whole context max-pooled into bins, where attention sinks and retrieved
/// positions show as vertical lines, and the most recent keys at full resolution, where a constant offset behind
/// the moving query shows as a slash. Runs of equal colour in a row are merged into one rectangle.</summary>
public static class SvgHeatmap
{
    /// <summary>Probabilities at or below this are drawn as the background.</summary>
    public const double Floor = 1e-4;
    private const int Levels = 24;

    // inferno-like ramp, light background first so that near-zero attention is nearly white
    private static readonly (double T, int R, int G, int B)[] Ramp =
    [
        (0.00, 252, 252, 246), (0.15, 250, 222, 140), (0.35, 246, 160, 60), (0.55, 220, 80, 60),
        (0.75, 140, 30, 100), (0.90, 60, 10, 90), (1.00, 0, 0, 4),
    ];

    public static string Color(double t)
    {
        t = Math.Clamp(t, 0, 1);
        for (int i = 1; i < Ramp.Length; i++)
        {
            if (t > Ramp[i].T) continue;
            var a = Ramp[i - 1];
            var b = Ramp[i];
            double u = (t - a.T) / (b.T - a.T);
            int r = (int)Math.Round(a.R + u * (b.R - a.R)), g = (int)Math.Round(a.G + u * (b.G - a.G)), bl = (int)Math.Round(a.B + u * (b.B - a.B));
            return $"#{r:x2}{g:x2}{bl:x2}";
        }
        return "#000004";
    }

    /// <summary>Colour level of a probability: 0 (background) to Levels − 1.</summary>
    public static int Level(double p) =>
        p <= Floor ? 0 : Math.Clamp((int)Math.Ceiling((Math.Log10(p) - Math.Log10(Floor)) / -Math.Log10(Floor) * (Levels - 1)), 1, Levels - 1);

    public static string Render(HeatmapData d, string title)
    {
        const int rowH = 5, top = 56, left = 60, gap = 70, panelA = 540, panelB = 400, bar = 16;
        int steps = d.Binned.Length;
        int plotH = Math.Max(1, steps) * rowH;
        int width = left + panelA + gap + panelB + 110, height = top + plotH + 64;
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(ci, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n");
        sb.Append(ci, $"<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>\n");
        sb.Append(ci, $"<text x=\"{width / 2}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{SvgLineChart.Esc(title)}</text>\n");

        int windowWidth = d.Window.Length > 0 ? d.Window[0].Length : 0;
        Panel(sb, d.Binned, left, top, panelA, rowH, 0, d.Positions, d.Bins,
            $"whole context: {d.Positions} keys, each column the max over {PerBin(d)}");
        Panel(sb, d.Window, left + panelA + gap, top, panelB, rowH, d.WindowStart, d.WindowStart + windowWidth, windowWidth,
            $"most recent {windowWidth} keys, full resolution");

        // y axis: decode step
        foreach (int x0 in new[] { left, left + panelA + gap })
        {
            for (int s = 0; s <= steps; s += Math.Max(1, steps / 4))
                sb.Append(ci, $"<text x=\"{x0 - 6}\" y=\"{top + s * rowH + 4}\" text-anchor=\"end\">{s}</text>\n");
            sb.Append(ci, $"<text transform=\"translate({x0 - 40} {top + plotH / 2}) rotate(-90)\" text-anchor=\"middle\">decode step (query)</text>\n");
        }

        // colour bar
        int cbx = left + panelA + gap + panelB + 30;
        for (int l = 0; l < Levels; l++)
        {
            double y = top + plotH - (l + 1) * plotH / (double)Levels;
            sb.Append(ci, $"<rect x=\"{cbx}\" y=\"{y:0.##}\" width=\"{bar}\" height=\"{plotH / (double)Levels + 0.5:0.##}\" fill=\"{Color(l / (double)(Levels - 1))}\"/>\n");
        }
        sb.Append(ci, $"<rect x=\"{cbx}\" y=\"{top}\" width=\"{bar}\" height=\"{plotH}\" fill=\"none\" stroke=\"#444444\"/>\n");
        for (int e = 0; e >= (int)Math.Log10(Floor); e--)
        {
            double y = top + plotH * (e / Math.Log10(Floor));
            sb.Append(ci, $"<text x=\"{cbx + bar + 4}\" y=\"{y + 4:0.##}\">1e{e}</text>\n");
        }
        sb.Append(ci, $"<text x=\"{cbx - 4}\" y=\"{top - 8}\">probability</text>\n");
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    /// <summary>Positions per column of the binned view, as a label ("16 positions").</summary>
    public static string PerBin(HeatmapData d)
    {
        int per = (d.Positions + d.Bins - 1) / Math.Max(1, d.Bins);
        return per <= 1 ? "1 position" : $"{per} positions";
    }

    private static void Panel(StringBuilder sb, float[][] rows, int x0, int y0, int width, int rowH, int keyStart, int keyEnd, int columns, string caption)
    {
        var ci = CultureInfo.InvariantCulture;
        int plotH = Math.Max(1, rows.Length) * rowH;
        double cw = width / (double)Math.Max(1, columns);
        sb.Append(ci, $"<text x=\"{x0 + width / 2}\" y=\"{y0 - 10}\" text-anchor=\"middle\">{SvgLineChart.Esc(caption)}</text>\n");
        sb.Append(ci, $"<rect x=\"{x0}\" y=\"{y0}\" width=\"{width}\" height=\"{plotH}\" fill=\"{Color(0)}\"/>\n");
        sb.Append("<g shape-rendering=\"crispEdges\">\n");
        for (int r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            int c = 0;
            while (c < row.Length)
            {
                int level = Level(row[c]);
                int end = c + 1;
                while (end < row.Length && Level(row[end]) == level) end++;
                if (level > 0)
                    sb.Append(ci, $"<rect x=\"{x0 + c * cw:0.##}\" y=\"{y0 + r * rowH}\" width=\"{(end - c) * cw:0.##}\" height=\"{rowH}\" fill=\"{Color(level / (double)(Levels - 1))}\"/>\n");
                c = end;
            }
        }
        sb.Append("</g>\n");
        sb.Append(ci, $"<rect x=\"{x0}\" y=\"{y0}\" width=\"{width}\" height=\"{plotH}\" fill=\"none\" stroke=\"#444444\"/>\n");
        // x axis: key positions
        foreach (double t in SvgLineChart.NiceTicks(keyStart, keyEnd, 6).Where(t => t >= keyStart && t <= keyEnd))
        {
            double x = x0 + (t - keyStart) / Math.Max(1, keyEnd - keyStart) * width;
            sb.Append(ci, $"<line x1=\"{x:0.##}\" y1=\"{y0 + plotH}\" x2=\"{x:0.##}\" y2=\"{y0 + plotH + 4}\" stroke=\"#444444\"/>\n");
            sb.Append(ci, $"<text x=\"{x:0.##}\" y=\"{y0 + plotH + 17}\" text-anchor=\"middle\">{t.ToString("0", ci)}</text>\n");
        }
        sb.Append(ci, $"<text x=\"{x0 + width / 2}\" y=\"{y0 + plotH + 36}\" text-anchor=\"middle\">key position</text>\n");
    }
}
