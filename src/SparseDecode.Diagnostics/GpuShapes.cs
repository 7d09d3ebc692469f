using SparseDecode.Cuda;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>Real model shapes for random-weight timing (`--shape`), so speed at 32K–128K context can be measured
/// without downloading weights.</summary>
internal static class GpuShapes
{
    private static readonly RopeScaling Llama31Rope = new(RopeType.Llama3, 500000, 8, 1, 4, 8192);

    /// <summary>Llama-3.1-8B: 32 layers, hidden 4096, 32 q / 8 kv heads of 128, MLP 14336, vocab 128256.</summary>
    public static readonly ModelConfig Llama31_8B = Shape("llama-3.1-8b", 32, 4096, 32, 14336);

    /// <summary>Llama-3.1-70B's layer shape (hidden 8192, 64 q / 8 kv heads of 128, MLP 28672, vocab 128256) with
    /// 16 of its 80 layers: 16 layers plus embedding and head are 30 GB of bf16, which leaves room on an 80 GB GPU
    /// for a 128K-token cache of those 16 layers (8.6 GB) and the 8 × 32K batch.</summary>
    public static readonly ModelConfig Llama31_70B_16Layers = Shape("llama-3.1-70b-16l", 16, 8192, 64, 28672);

    public static IReadOnlyList<ModelConfig> All => [Llama31_8B, Llama31_70B_16Layers];

    public static ModelConfig Get(string name) =>
        All.FirstOrDefault(c => string.Equals(c.ArchitectureName, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"Unknown shape '{name}': expected {string.Join(" or ", All.Select(c => c.ArchitectureName))}.");

    private static ModelConfig Shape(string name, int layers, int hidden, int heads, int intermediate) => new()
    {
        Architecture = Architecture.Llama,
        ArchitectureName = name,
        VocabSize = 128256,
        HiddenSize = hidden,
        IntermediateSize = intermediate,
        NumLayers = layers,
        NumHeads = heads,
        NumKvHeads = 8,
        HeadDim = 128,
        MaxPositions = 131072,
        RmsNormEps = 1e-5,
        Rope = Llama31Rope,
        TieEmbeddings = false,
        QkvBias = false,
        OutputBias = false,
        MlpBias = false,
    };
}
