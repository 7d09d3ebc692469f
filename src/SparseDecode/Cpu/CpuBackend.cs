using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The CPU as a backend: <see cref="CpuEngine"/> with a KV cache of the options' element type.</summary>
public sealed class CpuBackend : IBackend
{
    public string Name => "cpu";

    public IInferenceEngine Load(string directory, EngineOptions options) => CpuEngine.Load(directory, options.CacheType, options.KvCacheBytes);
}
