using System.Text.Json.Serialization;

namespace SparseDecode.Cli.Output;

/// <summary>Source-generated JSON contracts, so the trimmed single-file build serializes without reflection.</summary>
[JsonSourceGenerationOptions(WriteIndented = false)]
[JsonSerializable(typeof(Dictionary<string, double[]>), TypeInfoPropertyName = "DictionaryStringDoubleArray")]
internal sealed partial class CliJson : JsonSerializerContext;

/// <summary>What `gpu-step --json` writes: the device, the shape, the bandwidth the floors use and every row.</summary>
internal sealed record GpuStepReport(string Gpu, string Shape, double ReadBytesPerSecond, long WeightBytes,
    IReadOnlyList<SparseDecode.Diagnostics.GpuStepBench.Row> Rows);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(GpuStepReport))]
internal sealed partial class GpuStepJson : JsonSerializerContext;
