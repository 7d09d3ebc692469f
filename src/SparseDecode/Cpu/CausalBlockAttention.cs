using System.Numerics.Tensors;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Prefill attention of one layer: T new queries at positions start.. over the cache, causal, as small
/// matrix-matrix products with an online softmax (flash attention on the CPU). One work item is a KV head and a
/// block of <see cref="QueryBlock"/> queries of every query head of its group. Keys and values are taken in blocks
/// of <see cref="KeyBlock"/>: each block is widened to f32 once for the whole group (keys transposed, so that the
/// scores of 6 queries × 16 keys are one register tile), then per head: scores = Q·Kᵀ, the running max and sum
/// and output rescaled, output += P·V. Scratch is per worker and fixed by the shape, not the context.</summary>
public sealed unsafe class CausalBlockAttention : ParallelWork
{
    public const int QueryBlock = 48, KeyBlock = 64;
    private const int Tile = 6, Strip = 16;

    private readonly int _heads, _kvHeads, _group, _d, _dPad, _qdim;
    private readonly float _scale;
    private readonly float[][] _scratch;

    // the current call's arguments
    private KvCache _cache = null!;
    private int _layer, _start, _count, _blocks;
    private float* _q, _output;

    public CausalBlockAttention(int queryHeads, int kvHeads, int headDim, float scale, int threads)
    {
        _heads = queryHeads;
        _kvHeads = kvHeads;
        _group = queryHeads / kvHeads;
        _d = headDim;
        _dPad = (headDim + Strip - 1) / Strip * Strip; // values and outputs padded with zero columns to whole strips
        _qdim = queryHeads * headDim;
        _scale = scale;
        int size = _group * QueryBlock * (_d + _dPad + 2) + QueryBlock * KeyBlock + _d * KeyBlock + KeyBlock * _dPad + _d + Strip;
        _scratch = new float[threads][];
        for (int i = 0; i < threads; i++) _scratch[i] = new float[size];
    }

    /// <summary>output (T × query heads × d) = causal attention of q (T × query heads × d, after RoPE) over the
    /// cache's positions [0, start + T) of the layer, where positions start.. are the queries' own.</summary>
    public void Run(WorkerPool pool, KvCache cache, int layer, float* q, float* output, int start, int count)
    {
        if (pool.Threads > _scratch.Length) throw new ArgumentException($"This attention was sized for {_scratch.Length} threads, not {pool.Threads}.");
        (_cache, _layer, _start, _count) = (cache, layer, start, count);
        _q = q;
        _output = output;
        _blocks = (count + QueryBlock - 1) / QueryBlock;
        pool.Run(this, _kvHeads * _blocks);
        _cache = null!;
    }

    public override void Execute(int item, int worker)
    {
        // the last query blocks see the most keys: hand them out first so that the short ones fill in at the end
        int kvh = item % _kvHeads, b = _blocks - 1 - item / _kvHeads;
        int t0 = b * QueryBlock, n = Math.Min(QueryBlock, _count - t0), rows = (n + Tile - 1) / Tile * Tile;
        int d = _d, dPad = _dPad, first = _start + t0, keys = first + n;
        var cache = _cache;
        var type = cache.Type;
        fixed (float* scratch = _scratch[worker])
        {
            // per head of the group: scaled queries [QueryBlock × d], output [QueryBlock × dPad], running max and sum
            float* qs = scratch, o = qs + _group * QueryBlock * d, max = o + _group * QueryBlock * dPad, sum = max + _group * QueryBlock;
            float* s = sum + _group * QueryBlock, kt = s + QueryBlock * KeyBlock, v = kt + d * KeyBlock, row = v + KeyBlock * dPad, zero = row + d;
            new Span<float>(scratch, (int)(zero + Strip - scratch)).Clear();
            for (int g = 0; g < _group; g++)
            {
                int h = kvh * _group + g;
                for (int i = 0; i < n; i++)
                    TensorPrimitives.Multiply(new ReadOnlySpan<float>(_q + (long)(t0 + i) * _qdim + h * d, d), _scale,
                        new Span<float>(qs + (g * QueryBlock + i) * d, d));
                new Span<float>(max + g * QueryBlock, QueryBlock).Fill(float.NegativeInfinity);
            }
            for (int j0 = 0; j0 < keys; j0 += KeyBlock)
            {
                int kb = Math.Min(KeyBlock, keys - j0);
                for (int j = 0; j < kb; j++)
                {
                    ElementConvert.ToSingle(type, cache.Key(_layer, kvh, j0 + j), new Span<float>(row, d));
                    for (int e = 0; e < d; e++) kt[e * KeyBlock + j] = row[e];
                    ElementConvert.ToSingle(type, cache.Value(_layer, kvh, j0 + j), new Span<float>(v + j * dPad, d));
                }
                if (kb < KeyBlock) // a short last block: its missing values are zero, so P·V may run over whole strips
                    new Span<float>(v + kb * dPad, (KeyBlock - kb) * dPad).Clear();
                int scoredCols = (kb + Strip - 1) / Strip * Strip;
                for (int g = 0; g < _group; g++)
                {
                    float* qg = qs + g * QueryBlock * d, og = o + g * QueryBlock * dPad, mg = max + g * QueryBlock, lg = sum + g * QueryBlock;
                    for (int r = 0; r < rows; r += Tile)
                        for (int c = 0; c < scoredCols; c += Strip)
                            RegisterTile.Multiply6x16(qg + r * d, d, kt + c, KeyBlock, d, s + r * KeyBlock + c, KeyBlock, zero);
                    for (int i = 0; i < n; i++)
                    {
                        // causal: query i (position first + i) sees keys up to its own, a prefix of this block
                        int visible = Math.Min(kb, first + i - j0 + 1);
                        var si = new Span<float>(s + i * KeyBlock, KeyBlock);
                        if (visible <= 0)
                        {
                            si.Clear();
                            continue;
                        }
                        var live = si[..visible];
                        float m = Math.Max(mg[i], TensorPrimitives.Max(live));
                        float rescale = MathF.Exp(mg[i] - m); // 0 on the first block (max was −∞)
                        mg[i] = m;
                        TensorPrimitives.Subtract(live, m, live);
                        TensorPrimitives.Exp(live, live);
                        si[visible..].Clear();
                        lg[i] = lg[i] * rescale + TensorPrimitives.Sum(live);
                        if (rescale != 1f)
                        {
                            var oi = new Span<float>(og + i * dPad, dPad);
                            TensorPrimitives.Multiply(oi, rescale, oi);
                        }
                    }
                    for (int r = 0; r < rows; r += Tile)
                        for (int c = 0; c < dPad; c += Strip)
                            RegisterTile.Multiply6x16(s + r * KeyBlock, KeyBlock, v + c, dPad, kb, og + r * dPad + c, dPad, null);
                }
            }
            for (int g = 0; g < _group; g++)
            {
                int h = kvh * _group + g;
                for (int i = 0; i < n; i++)
                    TensorPrimitives.Multiply(new ReadOnlySpan<float>(o + (g * QueryBlock + i) * dPad, d), 1f / sum[g * QueryBlock + i],
                        new Span<float>(_output + (long)(t0 + i) * _qdim + h * d, d));
            }
        }
    }
}
