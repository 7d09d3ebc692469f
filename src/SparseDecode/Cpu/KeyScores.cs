using System.Runtime.Intrinsics.X86;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Which positions of a head a kernel reads: a range, or a list (any order).</summary>
internal interface IPositions
{
    int Count { get; }
    int At(int j);
}

internal readonly struct RangePositions(int start, int end) : IPositions
{
    public int Count => end - start;
    public int At(int j) => start + j;
}

internal readonly unsafe struct IndexPositions(int* indices, int count) : IPositions
{
    public int Count => count;
    public int At(int j) => indices[j];
}

/// <summary>Scores q·k × scale of one or more queries against the keys of one (layer, KV head): the first pass of
/// decode attention and every score a CPU selector computes, so that a selector ranks keys by exactly the scores
/// attention then weighs. Over a bf16 or q8 cache on AVX2 the rows are taken in blocks (<see cref="Bf16GroupKernel"/>,
/// <see cref="Q8GroupKernel"/>),
/// each block's rows requested from memory while the block before is computed: a head's rows are contiguous only
/// within a cache segment (32 KB or more of one head, then the next segment elsewhere), and a list of positions
/// (a sparse method's keys) has no order the hardware prefetcher could follow.</summary>
internal static unsafe class KeyScores
{
    /// <summary>Rows gathered per block: the block stays in L1 while every query reuses it.</summary>
    public const int RowBlock = 64;

    /// <summary>Whether `queries` queries of this cache take the blocked kernel (else one dot product per key and query).</summary>
    public static bool Blocked(KvCache cache, int queries) => cache.Type switch
    {
        DType.BF16 => Bf16GroupKernel.Supports(cache.HeadDim) && queries * cache.HeadDim <= 4096,
        DType.Q8 => Q8GroupKernel.Supports(cache.HeadDim),
        _ => false,
    };

    /// <summary>scores[i·stride + j] = scale · q_i·K[positions[j]] for the queries q_i at q + i·d. rows: room for
    /// 2 × <see cref="RowBlock"/> row addresses. With `thenValues` (blocked kernel only), on return the block
    /// half (blocks of the positions) % 2 of rows holds the first block's value rows, already requested.</summary>
    public static void Compute<TPositions>(KvCache cache, int layer, int head, float* q, int queries, TPositions positions,
        float scale, float* scores, long stride, byte** rows, bool thenValues = false) where TPositions : struct, IPositions
    {
        int d = cache.HeadDim, n = positions.Count;
        if (!Blocked(cache, queries))
        {
            // the row is read from memory once; the other queries' dot products find it in L1
            DType t = cache.Type;
            for (int j = 0; j < n; j++)
            {
                byte* key = cache.Key(layer, head, positions.At(j));
                for (int i = 0; i < queries; i++)
                    scores[i * stride + j] = Dot.Row(t, key, q + (long)i * d, d) * scale;
            }
            return;
        }
        bool q8 = cache.Type == DType.Q8;
        // the bf16 kernel takes its queries in the split order; the q8 kernel in the natural one
        float* split = stackalloc float[q8 ? 0 : queries * d];
        if (!q8)
            for (int i = 0; i < queries; i++) Bf16GroupKernel.Split(q + (long)i * d, split + i * d, d);
        Gather(cache, layer, head, positions, 0, values: false, rows);
        for (int j0 = 0; j0 < n; j0 += RowBlock)
        {
            int at = j0 / RowBlock % 2;
            // the next block's rows are requested now, so that memory works while this block is computed
            if (j0 + RowBlock < n) Gather(cache, layer, head, positions, j0 + RowBlock, values: false, rows + (at ^ 1) * RowBlock);
            else if (thenValues) Gather(cache, layer, head, positions, 0, values: true, rows + (at ^ 1) * RowBlock);
            int b = Math.Min(RowBlock, n - j0);
            if (q8) Q8GroupKernel.Scores(rows + at * RowBlock, b, q, queries, d, scale, scores + j0, stride);
            else Bf16GroupKernel.Scores(rows + at * RowBlock, b, split, queries, d, scale, scores + j0, stride);
        }
    }

    /// <summary>rows[0..] = the key (or value) rows of positions from.. (up to one block), each requested from memory
    /// (a prefetch: the caller computes on the block before meanwhile). The request is into L2, not L1: a block
    /// is 16 KB of requests at once, which L1's few miss buffers would hold up; at 32K positions of a Llama-3-8B
    /// layer this alone took dense attention from 11 to 8–9 ms.</summary>
    public static void Gather<TPositions>(KvCache cache, int layer, int head, TPositions positions, int from, bool values, byte** rows)
        where TPositions : struct, IPositions
    {
        int b = Math.Min(RowBlock, positions.Count - from), rowBytes = (int)cache.Type.RowBytes(cache.HeadDim);
        for (int j = 0; j < b; j++)
        {
            int pos = positions.At(from + j);
            byte* row = values ? cache.Value(layer, head, pos) : cache.Key(layer, head, pos);
            rows[j] = row;
            for (int o = 0; o < rowBytes; o += 64) Sse.Prefetch1(row + o);
        }
    }
}
