namespace SparseDecode.Model;

/// <summary>Element types the engine reads weights and caches in.</summary>
public enum DType
{
    F32,
    F16,
    BF16,

    /// <summary>KV caches only: a row of n entries (n a multiple of <see cref="DTypeExtensions.Q8Block"/>) is n
    /// signed bytes, then one f32 scale per block of 32 entries (entry = byte × its block's scale, the scale the
    /// block's largest magnitude / 127): llama.cpp's q8_0 with the scales after the bytes, so a row's bytes keep
    /// the row's alignment.</summary>
    Q8,
}

public static class DTypeExtensions
{
    /// <summary>Entries that share one scale in a <see cref="DType.Q8"/> row.</summary>
    public const int Q8Block = 32;

    /// <summary>Bytes per entry of the types stored entry by entry; <see cref="DType.Q8"/> is stored by rows
    /// (<see cref="RowBytes"/>).</summary>
    public static int SizeInBytes(this DType t) => t switch
    {
        DType.F32 => 4,
        DType.Q8 => throw new InvalidOperationException("q8 is stored by rows (entries and their block scales); use RowBytes."),
        _ => 2,
    };

    /// <summary>Bytes of a row of n entries.</summary>
    public static long RowBytes(this DType t, int n) => t == DType.Q8 ? n + (long)n / Q8Block * sizeof(float) : (long)n * t.SizeInBytes();

    /// <summary>Whether rows of n entries can be stored in this type (q8: whole blocks of 32).</summary>
    public static bool StoresRowsOf(this DType t, int n) => t != DType.Q8 || (n > 0 && n % Q8Block == 0);

    public static string Name(this DType t) => t switch
    {
        DType.F32 => "f32",
        DType.F16 => "f16",
        DType.Q8 => "q8",
        _ => "bf16",
    };

    public static DType Parse(string text) => text.ToLowerInvariant() switch
    {
        "f32" or "float32" => DType.F32,
        "f16" or "float16" => DType.F16,
        "bf16" or "bfloat16" => DType.BF16,
        "q8" or "q8_0" => DType.Q8,
        _ => throw new ArgumentException($"Unknown element type '{text}': expected f32, f16, bf16 or q8."),
    };
}
