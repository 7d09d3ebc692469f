using System.Globalization;
using SparseDecode.Evaluation;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace SparseDecode.Cli.Commands;

/// <summary>The table eval prints at the end. Where the terminal is wide enough, one bordered table; where it is
/// not (an 80-column terminal needs it), the same numbers as two borderless tables — accuracy, then fidelity and
/// speed — with short headers explained below, so that no number is wrapped and no header cut.</summary>
public static class EvalTable
{
    private sealed record Column(string Header, string Short, bool Accuracy, IReadOnlyList<string> Cells);

    private static readonly Dictionary<string, string> ShortTask = new()
    {
        [RulerTasks.Passkey] = "pass", [RulerTasks.MultiKey] = "mkey", [RulerTasks.MultiValue] = "mval",
        [RulerTasks.MultiQuery] = "mqry", [RulerTasks.VarTrack] = "vart", [RulerTasks.CommonWords] = "cwe",
        [RulerTasks.CodeCompletion] = "lcc",
    };

    private static string Pct(double v) => double.IsFinite(v) ? (v * 100).ToString("0.0", CultureInfo.InvariantCulture) : "–";

    private static List<Column> Columns(IReadOnlyList<MethodSummary> rows, EvalGrid grid)
    {
        var ci = CultureInfo.InvariantCulture;
        string L = EvalSummary.Ctx(grid.Contexts.Max());
        var needle = grid.Tasks.Where(t => t != RulerTasks.Perplexity).ToList();
        var cols = new List<Column>();
        void Add(string header, string shortHeader, bool accuracy, Func<MethodSummary, string> cell) =>
            cols.Add(new Column(header, shortHeader, accuracy, rows.Select(cell).ToList()));
        foreach (string t in needle)
            Add(t, ShortTask.GetValueOrDefault(t, t), true, r => r.Accuracy.TryGetValue(t, out double v) ? Pct(v) : "–");
        if (needle.Count > 0)
        {
            Add("mean", "mean", true, r => Pct(r.MeanAccuracy));
            Add("% dense", "%dense", true, r => r.OfDense is double o ? Pct(o) : "–");
            Add("paired 95% CI", "95% CI", false, r => r.VsDense?.Mean.RatioCi is { IsFinite: true } pc ? $"{Pct(pc.Low)}–{Pct(pc.High)}" : "–");
        }
        if (grid.Tasks.Contains(RulerTasks.Perplexity)) Add("ppl", "ppl", false, r => r.Perplexity is double p ? p.ToString("0.00", ci) : "–");
        Add("keys read", "read", false, r => r.AttendedOfDense is double ad ? Pct(ad) + "%" : "–");
        Add("mass recall", "recall", false, r => double.IsFinite(r.MassRecall) ? r.MassRecall.ToString("0.000", ci) : "–");
        Add($"ms/step @{L}", "ms/step", false, r => r.StepMsByContext.TryGetValue(L, out double ms) ? ms.ToString("0.00", ci) : "–");
        Add("speed-up", "speed-up", false, r => r.SpeedUp is double s ? s.ToString("0.00", ci) + "×" : "–");
        if (rows.Any(r => r.Lossless is not null))
        {
            // the lossless column: identical-to-dense samples (a mismatch named loudly) and drafts kept per pass
            Add("speculative identical to dense", "lossless", false, r => r.Lossless is { } l ? $"{l.Identical}/{l.Samples}" + (l.IsLossless ? "" : " NO") : "–");
            Add("drafts kept per pass", "kept", false, r => r.Lossless is { } l ? l.MeanAccepted.ToString("0.00", ci) : "–");
        }
        return cols;
    }

    public static IRenderable For(IReadOnlyList<MethodSummary> rows, EvalGrid grid, int width)
    {
        var cols = Columns(rows, grid);
        string title = $"accuracy % (mean over contexts {string.Join(", ", grid.Contexts)}), fidelity, speed at {grid.Contexts.Max()}";
        // a bordered column takes its widest cell plus 3 (padding and rule); a borderless one plus its 2 of padding
        int Wide(IEnumerable<Column> cs, Func<Column, string> header, int extra) =>
            1 + new[] { rows.Select(r => r.Method).Append("method"), rows.Select(r => r.Budget).Append("budget") }.Sum(c => c.Max(x => x.Length) + extra)
              + cs.Sum(c => Math.Max(header(c).Length, c.Cells.Max(x => x.Length)) + extra);
        if (Wide(cols, c => c.Header, 3) <= width)
            return Build(rows, cols, c => c.Header, TableBorder.Rounded, title);
        var parts = new List<IRenderable>
        {
            new Text(title + ":"),
            Build(rows, cols.Where(c => c.Accuracy).ToList(), c => c.Short, TableBorder.None, null),
            new Text(""),
            Build(rows, cols.Where(c => !c.Accuracy).ToList(), c => c.Short, TableBorder.None, null),
        };
        var legend = cols.Where(c => c.Short != c.Header).Select(c => $"{c.Short} = {c.Header}").ToList();
        legend.Add("95% CI: paired bootstrap interval of % dense (report.md has the paired tests); read: keys attended per step as a share of dense's");
        parts.Add(new Text(string.Join("; ", legend) + "."));
        return new Rows(parts);
    }

    private static Table Build(IReadOnlyList<MethodSummary> rows, IReadOnlyList<Column> cols, Func<Column, string> header, TableBorder border, string? title)
    {
        var table = new Table().Border(border);
        if (title is not null) table.Title(Markup.Escape(title));
        bool bare = border == TableBorder.None;
        TableColumn Col(string h) => bare ? new TableColumn(h).NoWrap().PadLeft(0).PadRight(2) : new TableColumn(h).NoWrap();
        table.AddColumn(Col("method")).AddColumn(Col("budget"));
        foreach (var c in cols) table.AddColumn(Col(Markup.Escape(header(c))).RightAligned());
        for (int i = 0; i < rows.Count; i++)
        {
            var cells = new List<string> { rows[i].Method, rows[i].Budget };
            cells.AddRange(cols.Select(c => c.Cells[i]));
            table.AddRow(cells.Select(c => new Markup(Markup.Escape(c))).ToArray<IRenderable>());
        }
        return table;
    }
}
