using System.Numerics.Tensors;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Decode attention of the `group` query heads that share one KV head (GQA): every key and value row is
/// read from memory once for the whole group instead of once per query head, which at long context is what the
/// step's time is made of. A part of the positions (a range, or an index list for sparse methods selected per KV
/// head) yields per query its largest score m, its exp-sum l = Σ exp(s − m) and the un-normalised output
/// Σ exp(s − m)·v, so the parts of one head, computed in parallel, combine exactly (flash-decoding).
/// Layout: query i of the group at q + i·d; its output at output + i·d; the score of the part's j-th position
/// (counted from 0 within the part) at scores + i·stride + j.</summary>
public static unsafe class GroupAttention
{
    /// <summary>One part: positions [start, end). max, sum: `group` floats; output: group × d floats.</summary>
    public static void Range(KvCache cache, int layer, int head, float* q, int group, int start, int end, float scale,
        float* scores, long stride, float* max, float* sum, float* output) =>
        Part(cache, layer, head, q, group, new RangePositions(start, end), scale, scores, stride, max, sum, output);

    /// <summary>One part: the listed positions (any order).</summary>
    public static void Indexed(KvCache cache, int layer, int head, float* q, int group, ReadOnlySpan<int> indices, float scale,
        float* scores, long stride, float* max, float* sum, float* output)
    {
        fixed (int* p = indices)
            Part(cache, layer, head, q, group, new IndexPositions(p, indices.Length), scale, scores, stride, max, sum, output);
    }

    /// <summary>Combines `parts` results of one group into the normalised outputs (one part: just normalised): part
    /// r's values for query i are max[r·group + i], sum[r·group + i] and partial + (r·group + i)·d; output i goes to
    /// output + i·d, which must not overlap the partials.</summary>
    public static void Combine(int parts, int group, int d, float* max, float* sum, float* partial, float* output)
    {
        for (int i = 0; i < group; i++)
        {
            float m = float.NegativeInfinity;
            for (int r = 0; r < parts; r++) m = MathF.Max(m, max[r * group + i]);
            var o = new Span<float>(output + (long)i * d, d);
            o.Clear();
            double total = 0;
            for (int r = 0; r < parts; r++)
            {
                int at = r * group + i;
                if (sum[at] == 0) continue; // an empty part
                float w = MathF.Exp(max[at] - m);
                total += w * (double)sum[at];
                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(partial + (long)at * d, d), w, o, o);
            }
            TensorPrimitives.Multiply(o, total > 0 ? (float)(1 / total) : 0f, o);
        }
    }

    private static void Part<TPositions>(KvCache cache, int layer, int head, float* q, int group, TPositions positions,
        float scale, float* scores, long stride, float* max, float* sum, float* output) where TPositions : struct, IPositions
    {
        int d = cache.HeadDim, n = positions.Count;
        bool fast = KeyScores.Blocked(cache, group);
        byte** rows = stackalloc byte*[2 * KeyScores.RowBlock];
        KeyScores.Compute(cache, layer, head, q, group, positions, scale, scores, stride, rows, thenValues: true);
        for (int i = 0; i < group; i++)
        {
            new Span<float>(output + (long)i * d, d).Clear();
            if (n == 0)
            {
                max[i] = float.NegativeInfinity;
                sum[i] = 0;
                continue;
            }
            var s = new Span<float>(scores + i * stride, n);
            float m = TensorPrimitives.Max(s);
            TensorPrimitives.Subtract(s, m, s);
            TensorPrimitives.Exp(s, s);
            max[i] = m;
            sum[i] = TensorPrimitives.Sum(s);
        }
        if (fast)
        {
            // bf16 outputs accumulate in the split order and are put back in order once at the end; the first
            // block's value rows were gathered (and requested) during the last block of scores
            bool q8 = cache.Type == DType.Q8;
            const int block = KeyScores.RowBlock;
            int first = (n + block - 1) / block % 2;
            for (int j0 = 0; j0 < n; j0 += block)
            {
                int at = (first + j0 / block) % 2;
                if (j0 + block < n) KeyScores.Gather(cache, layer, head, positions, j0 + block, values: true, rows + (at ^ 1) * block);
                if (q8) QueryGroups.AddWeightedValues<Q8GroupKernel.Values>(rows + at * block, Math.Min(block, n - j0), scores + j0, stride, output, d, group);
                else QueryGroups.AddWeightedValues<Bf16GroupKernel.Values>(rows + at * block, Math.Min(block, n - j0), scores + j0, stride, output, d, group);
            }
            if (!q8)
                for (int i = 0; i < group; i++) Bf16GroupKernel.Merge(output + (long)i * d, d);
            return;
        }
        for (int j = 0; j < n; j++)
        {
            byte* value = cache.Value(layer, head, positions.At(j));
            for (int i = 0; i < group; i++)
                Dot.AddScaledRow(cache.Type, value, scores[i * stride + j], output + (long)i * d, d);
        }
    }
}
