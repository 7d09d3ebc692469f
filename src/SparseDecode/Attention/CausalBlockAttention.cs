using SparseDecode.Cache;
using SparseDecode.Parallelism;

namespace SparseDecode.Attention;

/// <summary>Prefill attention of one layer: T new queries at positions start.. over the cache, causal, one work
/// item per (query head, block of <see cref="QueryBlock"/> queries), each block reading every key and value once
/// (<see cref="AttentionKernels.AttendCausalBlock"/>). Score scratch is kept per worker thread and grows with the
/// context, so a long prefill reuses it across chunks and layers.</summary>
public sealed unsafe class CausalBlockAttention : ParallelWork
{
    public const int QueryBlock = 16;

    private readonly int _heads, _group, _d, _qdim;
    private readonly float _scale;
    private readonly float[][] _scores, _rows;

    // the current call's arguments
    private KvCache _cache = null!;
    private int _layer, _start, _count;
    private float* _q, _output;

    public CausalBlockAttention(int queryHeads, int kvHeads, int headDim, float scale, int threads)
    {
        _heads = queryHeads;
        _group = queryHeads / kvHeads;
        _d = headDim;
        _qdim = queryHeads * headDim;
        _scale = scale;
        _scores = new float[threads][];
        _rows = new float[threads][];
        for (int i = 0; i < threads; i++)
        {
            _scores[i] = [];
            _rows[i] = new float[2 * headDim];
        }
    }

    /// <summary>output (T × query heads × d) = causal attention of q (T × query heads × d, after RoPE) over the
    /// cache's positions [0, start + T) of the layer, where positions start.. are the queries' own.</summary>
    public void Run(WorkerPool pool, KvCache cache, int layer, float* q, float* output, int start, int count)
    {
        if (pool.Threads > _scores.Length) throw new ArgumentException($"This attention was sized for {_scores.Length} threads, not {pool.Threads}.");
        (_cache, _layer, _start, _count) = (cache, layer, start, count);
        _q = q;
        _output = output;
        int blocks = (count + QueryBlock - 1) / QueryBlock;
        pool.Run(this, _heads * blocks);
        _cache = null!;
    }

    public override void Execute(int item, int worker)
    {
        int h = item % _heads, b = item / _heads;
        int t0 = b * QueryBlock, n = Math.Min(QueryBlock, _count - t0);
        int need = QueryBlock * (_start + _count);
        if (_scores[worker].Length < need) _scores[worker] = new float[need];
        AttentionKernels.AttendCausalBlock(_cache, _layer, h / _group, _q + (long)t0 * _qdim + h * _d, _qdim, n,
            _start + t0, _scale, _scores[worker], _rows[worker], _output + (long)t0 * _qdim + h * _d, _qdim);
    }
}
