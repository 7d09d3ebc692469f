namespace SparseDecode.Model;

/// <summary>Element types the engine reads weights and caches in.</summary>
public enum DType
{
    F32,
    F16,
    BF16,
}

public static class DTypeExtensions
{
    public static int SizeInBytes(this DType t) => t == DType.F32 ? 4 : 2;

    public static string Name(this DType t) => t switch
    {
        DType.F32 => "f32",
        DType.F16 => "f16",
        _ => "bf16",
    };

    public static DType Parse(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "float32" => DType.F32,
        "f16" or "float16" => DType.F16,
        "bf16" or "bfloat16" => DType.BF16,
        _ => throw new ArgumentException($"Unknown element type '{text}': expected f32, f16 or bf16."),
    };
}
