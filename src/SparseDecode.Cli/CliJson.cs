using System.Text.Json.Serialization;

namespace SparseDecode.Cli;

/// <summary>Source-generated JSON contracts, so the trimmed single-file build serializes without reflection.</summary>
[JsonSourceGenerationOptions(WriteIndented = false)]
[JsonSerializable(typeof(Dictionary<string, double[]>), TypeInfoPropertyName = "DictionaryStringDoubleArray")]
internal sealed partial class CliJson : JsonSerializerContext;
