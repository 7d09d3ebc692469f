using System.Text.Json;

namespace SparseDecode.Evaluation;

/// <summary>A finished run read back from its directory (results.json, and heatmap.json when it was recorded), so
/// that report.md and the plots can be written again from the measurements without running the model.</summary>
public sealed record StoredReport(EvalResultsFile Results, EvalGrid Grid, HeatmapData? Heatmap)
{
    public static StoredReport Load(string directory)
    {
        string path = Path.Combine(directory, "results.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} does not exist; --report-only re-renders the results of an earlier eval in --out.");
        var results = JsonSerializer.Deserialize(File.ReadAllText(path), EvalJson.Default.EvalResultsFile)
            ?? throw new InvalidDataException($"{path} holds no results.");
        var grid = results.Grid.ToGrid();
        // summaries are recomputed from the cells: a newer writer's columns (intervals) then appear in an older run's report
        results = results with { Summary = EvalSummary.Summarize(results.Cells, grid) };
        string heat = Path.Combine(directory, "heatmap.json");
        var heatmap = File.Exists(heat) ? JsonSerializer.Deserialize(File.ReadAllText(heat), EvalJson.Default.HeatmapData) : null;
        return new StoredReport(results, grid, heatmap);
    }
}
