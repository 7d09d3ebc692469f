using System.Numerics.Tensors;
using SparseDecode.Cache;
using SparseDecode.Model;

namespace SparseDecode.Attention;

/// <summary>Attention of one query vector over keys of one (layer, KV head) of the cache: scores q·k/√d over an
/// index set (or all positions), softmax in f32, weighted sum of values in f32. The same kernel serves dense
/// attention (the index set is every position; a page-wise fast path reads contiguous blocks) and every sparse
/// method (softmax over exactly the selected keys).</summary>
public static unsafe class AttentionKernels
{
    /// <summary>scores[j] = q·K[indices[j]] × scale.</summary>
    public static void Scores(KvCache cache, int layer, int head, float* q, ReadOnlySpan<int> indices, float scale, Span<float> scores)
    {
        int d = cache.HeadDim;
        DType t = cache.Type;
        for (int j = 0; j < indices.Length; j++)
            scores[j] = Kernels.Dot.Row(t, cache.Key(layer, head, indices[j]), q, d) * scale;
    }

    /// <summary>scores[p] = q·K[p] × scale for p in [0, n), page by page.</summary>
    public static void ScoresAll(KvCache cache, int layer, int head, float* q, int n, float scale, Span<float> scores)
    {
        int d = cache.HeadDim, ps = cache.PageSize;
        long rowBytes = (long)d * cache.Type.SizeInBytes();
        DType t = cache.Type;
        for (int page = 0; page * ps < n; page++)
        {
            byte* block = cache.KeyBlock(layer, head, page);
            int end = Math.Min(ps, n - page * ps);
            for (int i = 0; i < end; i++)
                scores[page * ps + i] = Kernels.Dot.Row(t, block + i * rowBytes, q, d) * scale;
        }
    }

    /// <summary>out = Σ_j w[j] V[indices[j]], w already normalized.</summary>
    public static void WeightedValues(KvCache cache, int layer, int head, ReadOnlySpan<int> indices, ReadOnlySpan<float> w, float* output)
    {
        int d = cache.HeadDim;
        new Span<float>(output, d).Clear();
        for (int j = 0; j < indices.Length; j++)
            Kernels.Dot.AddScaledRow(cache.Type, cache.Value(layer, head, indices[j]), w[j], output, d);
    }

    public static void WeightedValuesAll(KvCache cache, int layer, int head, int n, ReadOnlySpan<float> w, float* output)
    {
        int d = cache.HeadDim, ps = cache.PageSize;
        long rowBytes = (long)d * cache.Type.SizeInBytes();
        new Span<float>(output, d).Clear();
        for (int page = 0; page * ps < n; page++)
        {
            byte* block = cache.ValueBlock(layer, head, page);
            int end = Math.Min(ps, n - page * ps);
            for (int i = 0; i < end; i++)
                Kernels.Dot.AddScaledRow(cache.Type, block + i * rowBytes, w[page * ps + i], output, d);
        }
    }

    /// <summary>Sparse attention: softmax over exactly the selected keys. scratch needs indices.Length floats.</summary>
    public static void Attend(KvCache cache, int layer, int head, float* q, ReadOnlySpan<int> indices, float scale, Span<float> scratch, float* output)
    {
        var s = scratch[..indices.Length];
        Scores(cache, layer, head, q, indices, scale, s);
        Kernels.Activations.Softmax(s);
        WeightedValues(cache, layer, head, indices, s, output);
    }

    /// <summary>Dense attention over positions [0, n). scratch needs n floats.</summary>
    public static void AttendAll(KvCache cache, int layer, int head, float* q, int n, float scale, Span<float> scratch, float* output)
    {
        var s = scratch[..n];
        ScoresAll(cache, layer, head, q, n, scale, s);
        Kernels.Activations.Softmax(s);
        WeightedValuesAll(cache, layer, head, n, s, output);
    }

    /// <summary>Σ_i exp(s_i − max) style helpers are in Activations; this is the dense softmax mass of a subset,
    /// given full scores (used by instrumentation and tests).</summary>
    public static double MassOf(ReadOnlySpan<float> allScores, ReadOnlySpan<int> indices)
    {
        float max = TensorPrimitives.Max(allScores);
        double total = 0, kept = 0;
        foreach (float s in allScores) total += Math.Exp(s - max);
        foreach (int i in indices) kept += Math.Exp(allScores[i] - max);
        return kept / total;
    }
}
