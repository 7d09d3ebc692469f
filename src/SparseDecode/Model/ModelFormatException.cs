namespace SparseDecode.Model;

/// <summary>A checkpoint that cannot be used: missing file, malformed header or JSON, unsupported
/// architecture or dtype, missing tensor or wrong shape. The message is one sentence naming the file.</summary>
public sealed class ModelFormatException(string message) : Exception(message);
