using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda;

/// <summary>The first NVIDIA GPU as a backend ("cuda"): <see cref="GpuEngine"/> with the options' sequence slots,
/// capacity and product precisions. Register it with <see cref="Backends.BackendRegistry.Register"/>.</summary>
public sealed class CudaBackend : IBackend
{
    public static CudaBackend Instance { get; } = new();

    public string Name => "cuda";

    public IInferenceEngine Load(string directory, EngineOptions options)
    {
        // the GPU's cache is bf16 (the default f32 of EngineOptions is taken as "the backend's own"); a smaller type
        // asked for to save memory would not be honoured, so it is refused
        if (options.CacheType is DType.Q8 or DType.F16)
            throw new NotSupportedException($"The GPU's KV cache is bf16; a {options.CacheType.Name()} cache is for the CPU.");
        if (options.KvCacheBytes is not null)
            throw new NotSupportedException("The GPU sizes its KV cache pool from its free memory; a bound in bytes is for the CPU.");
        if (options.Sequences < 1) throw new ArgumentException($"The GPU engine needs at least one sequence slot, got {options.Sequences}.");
        var config = ModelConfig.Load(directory);
        int capacity = Math.Min(options.Capacity ?? config.MaxPositions, config.MaxPositions);
        if (capacity < 1) throw new ArgumentException($"The GPU cache needs at least one position per sequence, got {capacity}.");
        var engine = GpuEngine.Load(directory, capacity, options.Sequences, options.KvOnDemand, options.DecodePrecision);
        if (engine.Model.Prefill is { } prefill) prefill.Precision = options.PrefillPrecision;
        return engine;
    }
}
