using SparseDecode.Cpu;
using SparseDecode.Model;

namespace SparseDecode.Benchmarks;

/// <summary>One layer of Llama-3.1-8B-shaped KV cache (8 KV heads × 128, 32 query heads) filled with random keys
/// and values, plus a random query per head: the per-layer workload of a decode step at a given context.</summary>
internal sealed class LayerCache : IDisposable
{
    public const int QueryHeads = 32, KvHeads = 8, HeadDim = 128;

    public KvCache Cache { get; }
    public float[] Query { get; } = new float[QueryHeads * HeadDim];
    public int Context { get; }

    public LayerCache(int context, DType type = DType.BF16, int seed = 7)
    {
        Context = context;
        Cache = new KvCache(1, KvHeads, HeadDim, type, context);
        var rng = new Random(seed);
        var k = new float[KvHeads * HeadDim];
        var v = new float[KvHeads * HeadDim];
        for (int pos = 0; pos < context; pos++)
        {
            for (int i = 0; i < k.Length; i++)
            {
                k[i] = (float)(rng.NextDouble() * 2 - 1);
                v[i] = (float)(rng.NextDouble() * 2 - 1);
            }
            Cache.Write(0, pos, k, v);
        }
        Cache.Length = context;
        for (int i = 0; i < Query.Length; i++) Query[i] = (float)(rng.NextDouble() * 2 - 1);
    }

    public void Dispose() => Cache.Dispose();
}
