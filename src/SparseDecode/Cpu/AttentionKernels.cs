using System.Numerics.Tensors;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Attention of one query vector over keys of one (layer, KV head) of the cache: scores q·k/√d over an
/// index set (or all positions), softmax in f32, weighted sum of values in f32 — the grouped kernel
/// (<see cref="GroupAttention"/>) with a group of one, so a sparse method's softmax runs over exactly the selected
/// keys with the same arithmetic as dense attention.</summary>
public static unsafe class AttentionKernels
{
    /// <summary>scores[j] = q·K[indices[j]] × scale.</summary>
    public static void Scores(KvCache cache, int layer, int head, float* q, ReadOnlySpan<int> indices, float scale, Span<float> scores)
    {
        if (scores.Length < indices.Length) throw new ArgumentException("The score span is shorter than the index list.", nameof(scores));
        byte** rows = stackalloc byte*[2 * KeyScores.RowBlock];
        fixed (int* p = indices)
        fixed (float* s = scores)
            KeyScores.Compute(cache, layer, head, q, 1, new IndexPositions(p, indices.Length), scale, s, 0, rows);
    }

    /// <summary>scores[p] = q·K[p] × scale for p in [start, start + scores.Length).</summary>
    public static void ScoresRange(KvCache cache, int layer, int head, float* q, int start, float scale, Span<float> scores)
    {
        byte** rows = stackalloc byte*[2 * KeyScores.RowBlock];
        fixed (float* s = scores)
            KeyScores.Compute(cache, layer, head, q, 1, new RangePositions(start, start + scores.Length), scale, s, 0, rows);
    }

    /// <summary>scores[p] = q·K[p] × scale for p in [0, n).</summary>
    public static void ScoresAll(KvCache cache, int layer, int head, float* q, int n, float scale, Span<float> scores) =>
        ScoresRange(cache, layer, head, q, 0, scale, scores[..n]);

    /// <summary>Sparse attention: softmax over exactly the selected keys. scratch needs indices.Length floats.</summary>
    public static void Attend(KvCache cache, int layer, int head, float* q, ReadOnlySpan<int> indices, float scale, Span<float> scratch, float* output)
    {
        if (scratch.Length < indices.Length) throw new ArgumentException("The scratch span is shorter than the index list.", nameof(scratch));
        float* partial = stackalloc float[cache.HeadDim];
        float max, sum;
        fixed (float* s = scratch)
            GroupAttention.Indexed(cache, layer, head, q, 1, indices, scale, s, 0, &max, &sum, partial);
        GroupAttention.Combine(1, 1, cache.HeadDim, &max, &sum, partial, output);
    }

    /// <summary>Dense attention over positions [0, n). scratch needs n floats.</summary>
    public static void AttendAll(KvCache cache, int layer, int head, float* q, int n, float scale, Span<float> scratch, float* output)
    {
        if (scratch.Length < n) throw new ArgumentException("The scratch span is shorter than the context.", nameof(scratch));
        float* partial = stackalloc float[cache.HeadDim];
        float max, sum;
        fixed (float* s = scratch)
            GroupAttention.Range(cache, layer, head, q, 1, 0, n, scale, s, 0, &max, &sum, partial);
        GroupAttention.Combine(1, 1, cache.HeadDim, &max, &sum, partial, output);
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
