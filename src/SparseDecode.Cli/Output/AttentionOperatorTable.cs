using System.Globalization;
using System.Text;
using System.Text.Json;
using SparseDecode.Diagnostics;

namespace SparseDecode.Cli.Output;

/// <summary>`attention-op`'s rows as a markdown table and as JSON, each beside dense and oracle of the same run
/// (<see cref="AttentionOperatorBench.Compare"/>).</summary>
internal static class AttentionOperatorTable
{
    private static readonly CultureInfo Ci = CultureInfo.InvariantCulture;

    public static string Markdown(IReadOnlyList<AttentionOperatorBench.Row> rows, string where)
    {
        var sb = new StringBuilder();
        sb.AppendLine(Ci, $"attention operator per layer (mean over the model's layers), steady state, {where}");
        sb.AppendLine("| shape | context | budget | keys | method | selection ms | attention ms | operator ms | × dense | index × oracle | scored/kv head | attended/head | spread |");
        sb.AppendLine("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (r, overDense, overOracle) in AttentionOperatorBench.Compare(rows))
            sb.AppendLine(Ci, $"| {r.Shape} | {r.Context} | {(r.Method == "dense" ? "—" : (r.Budget * 100).ToString("0.##", Ci) + "%")} | {r.BudgetKeys} | {r.Method} | {r.SelectionMs:F4} | {r.AttentionMs:F4} | {r.OperatorMs:F4} | {Ratio(overDense)} | {Ratio(overOracle)} | {Count(r.KeysScored)} | {Count(r.KeysAttended)} | {r.Spread * 100:F0}% |");
        return sb.ToString();
    }

    private static string Ratio(double x) => double.IsFinite(x) ? x.ToString("F2", Ci) : "—";
    private static string Count(double x) => double.IsFinite(x) ? x.ToString("F0", Ci) : "—";

    public static string Json(IReadOnlyList<AttentionOperatorBench.Row> rows, string where)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("where", where);
            w.WriteStartArray("rows");
            foreach (var (r, overDense, overOracle) in AttentionOperatorBench.Compare(rows))
            {
                w.WriteStartObject();
                w.WriteString("shape", r.Shape);
                w.WriteNumber("context", r.Context);
                w.WriteNumber("budget", r.Budget);
                w.WriteNumber("budgetKeys", r.BudgetKeys);
                w.WriteString("method", r.Method);
                w.WriteNumber("selectionMs", r.SelectionMs);
                w.WriteNumber("attentionMs", r.AttentionMs);
                w.WriteNumber("operatorMs", r.OperatorMs);
                w.WriteNumber("spread", r.Spread);
                Number(w, "overDense", overDense);
                Number(w, "indexOverOracle", overOracle);
                Number(w, "keysScoredPerKvHead", r.KeysScored);
                Number(w, "keysAttendedPerHead", r.KeysAttended);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void Number(Utf8JsonWriter w, string name, double x)
    {
        if (double.IsFinite(x)) w.WriteNumber(name, x);
        else w.WriteNull(name);
    }
}
