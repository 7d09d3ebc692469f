using System.Text.Json.Serialization;

namespace SparseDecode.Evaluation;

/// <summary>Source-generated JSON contracts of the evaluation's files (cells.jsonl, results.json), so the trimmed
/// build serializes them without reflection.</summary>
[JsonSourceGenerationOptions(WriteIndented = false, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(CellResult))]
[JsonSerializable(typeof(EvalResultsFile))]
[JsonSerializable(typeof(HeatmapData))]
[JsonSerializable(typeof(SpeedSweepFile))]
public sealed partial class EvalJson : JsonSerializerContext;
