using SparseDecode.Model;

namespace SparseDecode.Engine;

/// <summary>Which backend a command loads a checkpoint on, and how (`--device`, `--kv-type`, `--gpu-prefill`,
/// `--gpu-decode`).
/// <see cref="Backends.BackendRegistry.Load"/> turns it into an engine.</summary>
public sealed record EngineOptions
{
    /// <summary>A registered backend's name: "cpu" (default) or "cuda" (the first NVIDIA GPU) where the
    /// application registered the GPU backend.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Element type of the CPU engine's KV cache (f32, f16, bf16, or q8 for heads a multiple of 32 wide). The
    /// GPU's cache is always bf16: it takes f32 (the default) and bf16 as that, and refuses f16 and q8.</summary>
    public DType CacheType { get; init; } = DType.F32;

    /// <summary>CPU: the most bytes the KV caches of all sequences may hold together (each counts what its capacity can
    /// allocate); beyond it a sequence is refused with <see cref="KvCacheFullException"/> and the server makes a request
    /// wait for room. Null: no bound. The GPU sizes its own pool and refuses this.</summary>
    public long? KvCacheBytes { get; init; }

    /// <summary>GPU: positions each sequence's cache slot holds (default: the model's context).</summary>
    public int? Capacity { get; init; }

    /// <summary>GPU: sequences held at once (cache slots allocated up front).</summary>
    public int Sequences { get; init; } = 1;

    /// <summary>GPU: whether each sequence maps only the KV cache pages its own capacity needs from one pool (true), or
    /// every slot holds the full context for as long as the engine lives (false). Null: from a pool where that saves
    /// memory (each KV head's run of the context spans two or more of the driver's pages, 2 MiB) or where the slots
    /// allocated whole would not fit in the GPU's memory (then sequences beyond the pool wait for room).</summary>
    public bool? KvOnDemand { get; init; }

    /// <summary>GPU: the operand precision of the prefill's weight products.</summary>
    public ProductPrecision PrefillPrecision { get; init; } = ProductPrecision.Split;

    /// <summary>GPU: the operand precision of the decode steps' weight products (every row of every step, dense passes
    /// included). Split keeps the activations at f32 accuracy; Bf16 rounds them once before each product.</summary>
    public ProductPrecision DecodePrecision { get; init; } = ProductPrecision.Split;
}

/// <summary>The operand precision of the GPU's weight products (the weights are bf16 either way, and products sum in
/// f32). Split: the f32 activations as three bf16 parts (hi + mid + lo, all 24 bits of the f32 mantissa), so
/// log-probabilities agree with the CPU engine's f32 arithmetic (and K and V round to the same bf16 values); three times
/// the tensor-core work. Bf16: rounded to bf16 once, as bf16 inference frameworks (transformers, vLLM) run: a third of
/// the tensor-core work, log-probabilities within ~0.15 of the f32 engine's.</summary>
public enum ProductPrecision { Split, Bf16 }

/// <summary>A backend an engine can be loaded on: the CPU in this library, the GPU in its own package.</summary>
public interface IBackend
{
    /// <summary>What `--device` names it by.</summary>
    string Name { get; }

    /// <summary>Loads `directory` on this backend. Missing hardware or drivers fail with one sentence.</summary>
    IInferenceEngine Load(string directory, EngineOptions options);
}
