using SparseDecode.Cache;
using SparseDecode.Selection;

namespace SparseDecode.Attention;

/// <summary>The selection operations on the CPU, over one sequence's cache and the current layer's queries.</summary>
public sealed unsafe class CpuSelectionBackend : ISelectionBackend
{
    private readonly KvCache _cache;
    private readonly int _queryHeads;
    private readonly float _scale;
    private float[] _query = [];
    private float[] _scratch;
    private long _keysScored;

    public CpuSelectionBackend(KvCache cache, int queryHeads, float scale)
    {
        _cache = cache;
        _queryHeads = queryHeads;
        _scale = scale;
        _scratch = new float[1024];
    }

    /// <summary>Binds the backend to a layer's queries (all heads, after RoPE) at context length n.</summary>
    public void Bind(int layer, float[] query, int context)
    {
        Layer = layer;
        _query = query;
        Context = context;
        _keysScored = 0;
        if (_scratch.Length < context) _scratch = new float[Math.Max(context, 2 * _scratch.Length)];
    }

    public int Layer { get; private set; }
    public int Context { get; private set; }
    public int QueryHeads => _queryHeads;
    public int KvHeads => _cache.KvHeads;
    public int PageSize => _cache.PageSize;
    public long KeysScored => _keysScored;
    private int Group => _queryHeads / _cache.KvHeads;
    private int D => _cache.HeadDim;

    private (int first, int count, int kv) Heads(int head, SelectionGranularity g) =>
        g == SelectionGranularity.QueryHead ? (head, 1, head / Group) : (head * Group, Group, head);

    public void ScoreAll(int head, SelectionGranularity g, Span<float> scores)
    {
        var (first, count, kv) = Heads(head, g);
        _keysScored += Context;
        fixed (float* q = _query)
        {
            AttentionKernels.ScoresAll(_cache, Layer, kv, q + first * D, Context, _scale, scores);
            if (count == 1) return;
            var tmp = _scratch.AsSpan(0, Context);
            for (int h = first + 1; h < first + count; h++)
            {
                AttentionKernels.ScoresAll(_cache, Layer, kv, q + h * D, Context, _scale, tmp);
                System.Numerics.Tensors.TensorPrimitives.Max(scores[..Context], tmp, scores[..Context]);
            }
        }
    }

    public void Score(int head, SelectionGranularity g, ReadOnlySpan<int> indices, Span<float> scores)
    {
        var (first, count, kv) = Heads(head, g);
        _keysScored += indices.Length;
        fixed (float* q = _query)
        {
            AttentionKernels.Scores(_cache, Layer, kv, q + first * D, indices, _scale, scores);
            if (count == 1) return;
            var tmp = _scratch.AsSpan(0, indices.Length);
            for (int h = first + 1; h < first + count; h++)
            {
                AttentionKernels.Scores(_cache, Layer, kv, q + h * D, indices, _scale, tmp);
                System.Numerics.Tensors.TensorPrimitives.Max(scores[..indices.Length], tmp, scores[..indices.Length]);
            }
        }
    }

    public int TopK(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, Span<int> result)
    {
        if (_scratch.Length < scores.Length) _scratch = new float[scores.Length];
        return Kernels.TopK.Select(scores, candidates, k, result, _scratch);
    }

    public void PageUpperBounds(int head, SelectionGranularity g, Span<float> bounds)
    {
        var (first, count, kv) = Heads(head, g);
        int pages = (Context + PageSize - 1) / PageSize;
        for (int p = 0; p < pages; p++)
        {
            float* mn = _cache.KeyMin(Layer, kv, p), mx = _cache.KeyMax(Layer, kv, p);
            float best = float.NegativeInfinity;
            for (int h = first; h < first + count; h++)
            {
                float ub = 0;
                for (int i = 0; i < D; i++)
                {
                    float qi = _query[h * D + i];
                    ub += Math.Max(qi * mn[i], qi * mx[i]);
                }
                best = Math.Max(best, ub * _scale);
            }
            bounds[p] = best;
        }
    }

    public int QueryLength(SelectionGranularity g) => g == SelectionGranularity.QueryHead ? D : D * Group;

    public void CopyQuery(int head, SelectionGranularity g, Span<float> destination)
    {
        var (first, count, _) = Heads(head, g);
        _query.AsSpan(first * D, count * D).CopyTo(destination);
    }

    public float QueryCosine(int head, SelectionGranularity g, ReadOnlySpan<float> reference)
    {
        var (first, count, _) = Heads(head, g);
        return System.Numerics.Tensors.TensorPrimitives.CosineSimilarity(_query.AsSpan(first * D, count * D), reference);
    }
}
