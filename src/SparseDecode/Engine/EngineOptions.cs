using SparseDecode.Model;

namespace SparseDecode.Engine;

/// <summary>Which backend a command loads a checkpoint on, and how (`--device`, `--kv-type`).</summary>
public sealed record EngineOptions
{
    /// <summary>"cpu" (default) or "cuda" (the first NVIDIA GPU).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Element type of the CPU engine's KV cache; the GPU's cache is always bf16.</summary>
    public DType CacheType { get; init; } = DType.F32;

    /// <summary>GPU: positions each sequence's cache slot holds (default: the model's context).</summary>
    public int? Capacity { get; init; }

    /// <summary>GPU: sequences held at once (cache slots allocated up front).</summary>
    public int Sequences { get; init; } = 1;

    /// <summary>GPU: the prefill's operand precision — split (default: f32-accurate, matches the CPU engine) or
    /// bf16 (operands rounded once, as transformers does; about 2× faster, log-probabilities within ~0.15).</summary>
    public Cuda.PrefillPrecision PrefillPrecision { get; init; } = Cuda.PrefillPrecision.Split;

    public static readonly string[] Devices = ["cpu", "cuda"];

    /// <summary>Loads `directory` on the chosen backend. An unknown device, or cuda without a driver or GPU, fails
    /// with one sentence.</summary>
    public IInferenceEngine Load(string directory)
    {
        switch (Device)
        {
            case "cpu":
                return CpuEngine.Load(directory, CacheType);
            case "cuda":
                if (Sequences < 1) throw new ArgumentException($"The GPU engine needs at least one sequence slot, got {Sequences}.");
                var config = ModelConfig.Load(directory);
                int capacity = Math.Min(Capacity ?? config.MaxPositions, config.MaxPositions);
                if (capacity < 1) throw new ArgumentException($"The GPU cache needs at least one position per sequence, got {capacity}.");
                var engine = Cuda.GpuEngine.Load(directory, capacity, Sequences);
                if (engine.Model.Prefill is { } prefill) prefill.Precision = PrefillPrecision;
                return engine;
            default:
                throw new ArgumentException($"Unknown device '{Device}'; expected one of: {string.Join(", ", Devices)}.");
        }
    }
}
