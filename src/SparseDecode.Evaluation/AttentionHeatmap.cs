using ScottPlot;

namespace SparseDecode.Evaluation;

/// <summary>The attention-pattern heat map, rendered by ScottPlot as two images: the whole context max-pooled into
/// bins (vertical lines: positions every step returns to) and the most recent keys at full resolution (slash lines:
/// a constant offset behind the moving query). Colour is log10 of the probability; at or below <see cref="Floor"/>
/// is the palest colour of the ramp, and keys after the query (the causal mask: not yet in the cache) are grey, so
/// "never attended" and "cannot be attended" read apart.</summary>
public static class AttentionHeatmap
{
    public const double Floor = 1e-4;
    public const string MaskedColor = "#9a9a9a";

    /// <summary>Keys step s sees: the prompt and the tokens decoded before it, and itself.</summary>
    public static int Visible(HeatmapData d, int step) => d.PromptTokens + step + 1;

    /// <summary>First key position of bin b in the binned view.</summary>
    public static int BinStart(HeatmapData d, int bin) => (int)(((long)bin * d.Positions + d.Bins - 1) / d.Bins);

    /// <summary>[step, column] log10 probabilities of the whole-context view, NaN where the bin lies wholly after the query.</summary>
    public static double[,] Binned(HeatmapData d) => Grid(d.Binned, (s, c) => BinStart(d, c) >= Visible(d, s));

    /// <summary>[step, column] log10 probabilities of the recent-keys view, NaN after the query.</summary>
    public static double[,] Window(HeatmapData d) => Grid(d.Window, (s, c) => d.WindowStart + c >= Visible(d, s));

    private static double[,] Grid(float[][] rows, Func<int, int, bool> masked)
    {
        int cols = rows.Length > 0 ? rows[0].Length : 0;
        var g = new double[rows.Length, cols];
        double floor = Math.Log10(Floor);
        for (int s = 0; s < rows.Length; s++)
            for (int c = 0; c < cols; c++)
                g[s, c] = masked(s, c) ? double.NaN : rows[s][c] <= Floor ? floor : Math.Log10(rows[s][c]);
        return g;
    }

    public static Plot Whole(HeatmapData d, string title) =>
        Render(Binned(d), title, $"key position (whole context, {d.Positions} keys; each column the max over {PerBin(d)}; grey: after the query, masked)", 0, d.Positions);

    public static Plot Recent(HeatmapData d, string title)
    {
        title += " — recent keys";
        int w = d.Window.Length > 0 ? d.Window[0].Length : 0;
        return Render(Window(d), title, $"key position (the most recent {w} keys, full resolution; grey: after the query, masked)", d.WindowStart, d.WindowStart + w);
    }

    /// <summary>Positions per column of the binned view, as a label ("16 positions").</summary>
    public static string PerBin(HeatmapData d)
    {
        int per = (d.Positions + d.Bins - 1) / Math.Max(1, d.Bins);
        return per <= 1 ? "1 position" : $"{per} positions";
    }

    private static Plot Render(double[,] grid, string title, string xLabel, double x0, double x1)
    {
        var plt = new Plot();
        plt.Title(title);
        plt.XLabel(xLabel);
        plt.YLabel("decode step (query)");
        var hm = plt.Add.Heatmap(grid);
        hm.Colormap = new Ramp();
        hm.ManualRange = new ScottPlot.Range(Math.Log10(Floor), 0);
        hm.NaNCellColor = Color.FromHex(MaskedColor);
        int steps = grid.GetLength(0);
        // rows top to bottom are steps 0, 1, …: the y axis counts down the image
        hm.Extent = new CoordinateRect(x0, x1, steps, 0);
        plt.Axes.SetLimits(x0, x1, steps, 0);
        var bar = plt.Add.ColorBar(hm, Edge.Right);
        bar.Label = "probability (log scale)";
        int e0 = (int)Math.Log10(Floor);
        bar.Axis.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(e0, -e0 + 1).Select(e => (double)e).ToArray(),
            Enumerable.Range(e0, -e0 + 1).Select(e => e == e0 ? $"≤1e{e}" : $"1e{e}").ToArray());
        return plt;
    }

    /// <summary>Light-to-dark inferno-like ramp, so that near-zero attention is nearly white and stands apart from the grey mask.</summary>
    private sealed class Ramp : IColormap
    {
        private static readonly (double T, byte R, byte G, byte B)[] Stops =
        [
            (0.00, 252, 252, 246), (0.15, 250, 222, 140), (0.35, 246, 160, 60), (0.55, 220, 80, 60),
            (0.75, 140, 30, 100), (0.90, 60, 10, 90), (1.00, 0, 0, 4),
        ];

        public string Name => "attention";

        public Color GetColor(double t)
        {
            t = Math.Clamp(double.IsFinite(t) ? t : 0, 0, 1);
            for (int i = 1; i < Stops.Length; i++)
            {
                if (t > Stops[i].T) continue;
                var a = Stops[i - 1];
                var b = Stops[i];
                double u = (t - a.T) / (b.T - a.T);
                return new Color((byte)Math.Round(a.R + u * (b.R - a.R)), (byte)Math.Round(a.G + u * (b.G - a.G)), (byte)Math.Round(a.B + u * (b.B - a.B)));
            }
            return new Color(0, 0, 4);
        }
    }
}
