using System.Numerics.Tensors;
using SparseDecode.Cache;
using SparseDecode.Model;
using System.Runtime.Intrinsics.X86;

namespace SparseDecode.Attention;

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

    private interface IPositions
    {
        int Count { get; }
        int At(int j);
    }

    private readonly struct RangePositions(int start, int end) : IPositions
    {
        public int Count => end - start;
        public int At(int j) => start + j;
    }

    private readonly struct IndexPositions(int* indices, int count) : IPositions
    {
        public int Count => count;
        public int At(int j) => indices[j];
    }

    /// <summary>Rows gathered per block: the block's keys (then values) stay in L1 while the group's queries reuse them.</summary>
    private const int RowBlock = 64;

    /// <summary>rows[0..] = the key (or value) rows of positions From.. (up to one block), each requested from memory
    /// (a prefetch: the caller computes on the previous block meanwhile).</summary>
    private static void Gather<TPositions>(KvCache cache, int layer, int head, TPositions positions, int from, bool values, byte** rows)
        where TPositions : struct, IPositions
    {
        int b = Math.Min(RowBlock, positions.Count - from), rowBytes = cache.HeadDim * cache.Type.SizeInBytes();
        for (int j = 0; j < b; j++)
        {
            int pos = positions.At(from + j);
            byte* row = values ? cache.Value(layer, head, pos) : cache.Key(layer, head, pos);
            rows[j] = row;
            for (int o = 0; o < rowBytes; o += 64) Sse.Prefetch0(row + o);
        }
    }

    private static void Part<TPositions>(KvCache cache, int layer, int head, float* q, int group, TPositions positions,
        float scale, float* scores, long stride, float* max, float* sum, float* output) where TPositions : struct, IPositions
    {
        int d = cache.HeadDim, n = positions.Count;
        bool fast = cache.Type == DType.BF16 && Bf16GroupKernel.Supports(d) && group * d <= 4096;
        float* split = stackalloc float[fast ? group * d : 0];
        byte** rows = stackalloc byte*[fast ? 2 * RowBlock : 0];
        if (fast)
        {
            for (int i = 0; i < group; i++) Bf16GroupKernel.Split(q + (long)i * d, split + i * d, d);
            Gather(cache, layer, head, positions, 0, values: false, rows);
            for (int j0 = 0; j0 < n; j0 += RowBlock)
            {
                byte** block = rows + (j0 / RowBlock % 2) * RowBlock;
                // the next block's rows are requested now, so that memory works while this block is computed
                if (j0 + RowBlock < n) Gather(cache, layer, head, positions, j0 + RowBlock, values: false, rows + (j0 / RowBlock % 2 ^ 1) * RowBlock);
                else Gather(cache, layer, head, positions, 0, values: true, rows + (j0 / RowBlock % 2 ^ 1) * RowBlock);
                int b = Math.Min(RowBlock, n - j0);
                for (int i = 0; i < group; i++) Bf16GroupKernel.Scores(block, b, split + i * d, d, scale, scores + i * stride + j0);
            }
        }
        else
        {
            DType t = cache.Type;
            // The row is read from memory once; the group's other dot products find it in L1. Dot.Row works on the
            // stored type directly (no conversion pass, no per-call span set-up).
            for (int j = 0; j < n; j++)
            {
                byte* key = cache.Key(layer, head, positions.At(j));
                for (int i = 0; i < group; i++)
                    scores[i * stride + j] = Kernels.Dot.Row(t, key, q + (long)i * d, d) * scale;
            }
        }
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
            // outputs accumulate in the split order and are put back in order once at the end; the first block's
            // value rows were gathered (and requested) during the last block of scores
            int first = (n + RowBlock - 1) / RowBlock % 2;
            for (int j0 = 0; j0 < n; j0 += RowBlock)
            {
                int at = (first + j0 / RowBlock) % 2;
                if (j0 + RowBlock < n) Gather(cache, layer, head, positions, j0 + RowBlock, values: true, rows + (at ^ 1) * RowBlock);
                Bf16GroupKernel.AddWeightedValues(rows + at * RowBlock, Math.Min(RowBlock, n - j0), scores + j0, stride, output, d, group);
            }
            for (int i = 0; i < group; i++) Bf16GroupKernel.Merge(output + (long)i * d, d);
            return;
        }
        for (int j = 0; j < n; j++)
        {
            byte* value = cache.Value(layer, head, positions.At(j));
            for (int i = 0; i < group; i++)
                Kernels.Dot.AddScaledRow(cache.Type, value, scores[i * stride + j], output + (long)i * d, d);
        }
    }
}
