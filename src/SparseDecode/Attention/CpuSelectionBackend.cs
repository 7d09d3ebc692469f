using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using SparseDecode.Cache;
using SparseDecode.Model;
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

    /// <summary>Binds the backend to a layer's queries (all heads, after RoPE) at context length n; keys are read
    /// from that layer of the cache.</summary>
    public void Bind(int layer, float[] query, int context)
    {
        if ((uint)layer >= (uint)_cache.Layers) throw new ArgumentOutOfRangeException(nameof(layer), $"The cache has {_cache.Layers} layers; layer {layer} was asked for.");
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

    private (int first, int count, int kv) Heads(int head, SelectionGranularity g) => HeadQueries.Heads(head, g, Group);

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
                TensorPrimitives.Max(scores[..Context], tmp, scores[..Context]);
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
                TensorPrimitives.Max(scores[..indices.Length], tmp, scores[..indices.Length]);
            }
        }
    }

    public int TopK(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, Span<int> result)
    {
        if (_scratch.Length < scores.Length) _scratch = new float[scores.Length];
        return Kernels.TopK.Select(scores, candidates, k, result, _scratch);
    }

    /// <summary>Quest's bound Σ_j max(q_j·min_j, q_j·max_j)·scale per page, widened by the worst-case rounding of
    /// f32 products and sums of this length (4·γ_d·Σ_j max(|q_j·min_j|, |q_j·max_j|), γ_d = (d+2)·2⁻²³) so that it
    /// bounds the scores the kernels actually compute, not only exact ones. Each page summary counts as one key.</summary>
    public void PageUpperBounds(int head, SelectionGranularity g, Span<float> bounds)
    {
        var (first, count, kv) = Heads(head, g);
        int pages = (Context + PageSize - 1) / PageSize, d = D;
        _keysScored += pages;
        double gamma = (d + 2) * Math.Pow(2, -23);
        fixed (float* query = _query)
            for (int p = 0; p < pages; p++)
            {
                float* mn = _cache.KeyMin(Layer, kv, p), mx = _cache.KeyMax(Layer, kv, p);
                double best = double.NegativeInfinity;
                for (int h = first; h < first + count; h++)
                {
                    PageBound(query + h * d, mn, mx, d, out float sum, out float magnitude);
                    double v = (sum + 4 * gamma * magnitude) * _scale;
                    best = Math.Max(best, v + Math.Abs(v) * gamma);
                }
                float f = (float)best;
                bounds[p] = f < best ? MathF.BitIncrement(f) : f;
            }
    }

    /// <summary>Σ_j max(q_j·min_j, q_j·max_j) and Σ_j max(|q_j·min_j|, |q_j·max_j|) in one pass.</summary>
    private static void PageBound(float* q, float* mn, float* mx, int d, out float sum, out float magnitude)
    {
        int i = 0;
        float s = 0, m = 0;
        if (Vector256.IsHardwareAccelerated && d >= 8)
        {
            var accS = Vector256<float>.Zero;
            var accM = Vector256<float>.Zero;
            for (; i <= d - 8; i += 8)
            {
                var qv = Vector256.Load(q + i);
                var a = qv * Vector256.Load(mn + i);
                var b = qv * Vector256.Load(mx + i);
                accS += Vector256.Max(a, b);
                accM += Vector256.Max(Vector256.Abs(a), Vector256.Abs(b));
            }
            s = Vector256.Sum(accS);
            m = Vector256.Sum(accM);
        }
        for (; i < d; i++)
        {
            float a = q[i] * mn[i], b = q[i] * mx[i];
            s += Math.Max(a, b);
            m += Math.Max(Math.Abs(a), Math.Abs(b));
        }
        sum = s;
        magnitude = m;
    }

    /// <summary>Scores of [start, start + scores.Length), read page block by page block.</summary>
    public void ScoreRange(int head, SelectionGranularity g, int start, Span<float> scores)
    {
        var (first, count, kv) = Heads(head, g);
        int n = scores.Length;
        _keysScored += n;
        if (count > 1 && _scratch.Length < n) _scratch = new float[Math.Max(n, 2 * _scratch.Length)];
        fixed (float* q = _query)
        {
            RangeScores(kv, q + first * D, start, scores);
            var tmp = _scratch.AsSpan(0, count > 1 ? n : 0);
            for (int h = first + 1; h < first + count; h++)
            {
                RangeScores(kv, q + h * D, start, tmp);
                TensorPrimitives.Max(scores, tmp, scores);
            }
        }
    }

    private void RangeScores(int kv, float* q, int start, Span<float> scores)
    {
        int ps = PageSize, d = D;
        long rowBytes = (long)d * _cache.Type.SizeInBytes();
        var t = _cache.Type;
        for (int j = 0; j < scores.Length;)
        {
            int pos = start + j, page = pos / ps, offset = pos % ps;
            byte* block = _cache.KeyBlock(Layer, kv, page);
            int m = Math.Min(ps - offset, scores.Length - j);
            for (int i = 0; i < m; i++)
                scores[j + i] = Kernels.Dot.Row(t, block + (offset + i) * rowBytes, q, d) * _scale;
            j += m;
        }
    }

    public int QueryLength(SelectionGranularity g) => HeadQueries.Length(g, D, Group);

    public void CopyQuery(int head, SelectionGranularity g, Span<float> destination) =>
        HeadQueries.Copy(_query, head, g, D, Group, destination);

    public float QueryCosine(int head, SelectionGranularity g, ReadOnlySpan<float> reference) =>
        HeadQueries.Cosine(_query, head, g, D, Group, reference);
}
