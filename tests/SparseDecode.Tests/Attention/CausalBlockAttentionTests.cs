using SparseDecode.Cpu;
using SparseDecode.Model;

namespace SparseDecode.Tests.AttentionChecks;

/// <summary>Prefill attention (blocked, online softmax) against a float64 softmax over the same cached keys.</summary>
public unsafe class CausalBlockAttentionTests
{
    /// <summary>Head dims off the 16-column strip (24) and on it (64), query counts across the 48-query block and
    /// off the 6-query tile, contexts across the 64-key block, a cache already holding earlier positions.</summary>
    [Theory]
    [InlineData(4, 2, 24, 0, 101, DType.F32)]
    [InlineData(6, 2, 64, 70, 53, DType.BF16)]
    [InlineData(3, 3, 16, 5, 1, DType.F32)]
    [InlineData(4, 1, 32, 130, 7, DType.F16)]
    [InlineData(6, 2, 64, 70, 53, DType.Q8)]
    public void EqualsFloat64Softmax(int heads, int kvHeads, int d, int start, int count, DType type)
    {
        var rng = new Random(heads * 1000 + d + start + count);
        int n = start + count, qdim = heads * d, group = heads / kvHeads;
        var cache = new KvCache(1, kvHeads, d, type, n);
        for (int p = 0; p < n; p++)
        {
            var k = Random(rng, kvHeads * d);
            var v = Random(rng, kvHeads * d);
            cache.Write(0, p, k, v);
        }
        cache.Length = n;
        var q = Random(rng, count * qdim);
        var output = new float[count * qdim];
        float scale = 1f / MathF.Sqrt(d);
        var pool = WorkerPool.Shared;
        fixed (float* qp = q, op = output)
            new CausalBlockAttention(heads, kvHeads, d, scale, pool.Threads).Run(pool, cache, 0, qp, op, start, count);

        var key = new float[d];
        var value = new float[d];
        for (int t = 0; t < count; t++)
            for (int h = 0; h < heads; h++)
            {
                int visible = start + t + 1;
                var scores = new double[visible];
                for (int j = 0; j < visible; j++)
                {
                    SparseDecode.Model.ElementConvert.ToSingle(type, cache.Key(0, h / group, j), key);
                    double s = 0;
                    for (int e = 0; e < d; e++) s += (double)q[t * qdim + h * d + e] * key[e];
                    scores[j] = s * scale;
                }
                double max = scores.Max(), total = scores.Sum(s => Math.Exp(s - max));
                for (int e = 0; e < d; e++)
                {
                    double o = 0;
                    for (int j = 0; j < visible; j++)
                    {
                        SparseDecode.Model.ElementConvert.ToSingle(type, cache.Value(0, h / group, j), value);
                        o += Math.Exp(scores[j] - max) / total * value[e];
                    }
                    float got = output[t * qdim + h * d + e];
                    Assert.True(Math.Abs(got - o) <= 1e-5 + 1e-4 * Math.Abs(o), $"token {t}, head {h}, dim {e}: {got} vs {o}");
                }
            }
    }

    private static float[] Random(Random rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 4 - 2);
        return v;
    }
}
