using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Engine;

namespace SparseDecode.Cpu;

/// <summary>The selection operations on the CPU, over one sequence's cache and the current layer's queries.
/// Scores of every position and page bounds are computed for all query heads of a KV head in one pass over its
/// keys (or page summaries) and kept until the next <see cref="Bind"/>: a method selecting per query head asks for
/// each head of the group in turn, and the group's rows are then read from memory once instead of once per head.
/// Each head's numbers are exactly those of scoring it alone.</summary>
public sealed unsafe class CpuSelectionBackend : ISelectionBackend
{
    private readonly KvCache _cache;
    private readonly int _queryHeads;
    private readonly float _scale;
    private float[] _query = [];
    private float[] _scratch;
    private long _keysScored;
    // the current layer's all-position scores [group][context] and page bounds [group][pages] of one KV head (-1: none)
    private float[] _groupScores = [], _groupBounds = [];
    private int _scoresKv = -1, _boundsKv = -1;
    private readonly GroupPass _pass;

    public CpuSelectionBackend(KvCache cache, int queryHeads, float scale)
    {
        _cache = cache;
        _queryHeads = queryHeads;
        _scale = scale;
        _scratch = new float[1024];
        _pass = new GroupPass(this);
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
        _scoresKv = _boundsKv = -1;
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
        FromGroup(bounds: false, first, count, kv, Context, scores);
    }

    /// <summary>result = the maximum over query heads [first, first + count) of KV head kv of their all-position
    /// scores (or page bounds) of `length` entries; the whole group is computed first unless this layer already did.</summary>
    private void FromGroup(bool bounds, int first, int count, int kv, int length, Span<float> result)
    {
        int group = Group;
        ref float[] buffer = ref bounds ? ref _groupBounds : ref _groupScores;
        ref int computedFor = ref bounds ? ref _boundsKv : ref _scoresKv;
        _keysScored += length;
        if (computedFor != kv)
        {
            // sized once for the cache's capacity (scores) or its pages (bounds), so a growing sequence never reallocates it
            if (buffer.Length < group * length)
                buffer = new float[group * Math.Max(length, bounds ? (_cache.Capacity + PageSize - 1) / PageSize : _cache.Capacity)];
            _pass.Run(bounds, kv, length, bounds ? MinBoundsPiece : MinScoresPiece);
            computedFor = kv;
        }
        MaxOfRows(buffer.AsSpan((first - kv * group) * length, count * length), count, length, result[..length]);
    }

    /// <summary>result = the element-wise maximum of `count` rows of length n laid out one after the other.</summary>
    private static void MaxOfRows(ReadOnlySpan<float> rows, int count, int n, Span<float> result)
    {
        rows[..n].CopyTo(result);
        for (int i = 1; i < count; i++) TensorPrimitives.Max(result, rows.Slice(i * n, n), result);
    }

    public void Score(int head, SelectionGranularity g, ReadOnlySpan<int> indices, Span<float> scores)
    {
        fixed (int* p = indices) GroupScores(head, g, new IndexPositions(p, indices.Length), scores);
    }

    /// <summary>Scores of [start, start + scores.Length).</summary>
    public void ScoreRange(int head, SelectionGranularity g, int start, Span<float> scores) =>
        GroupScores(head, g, new RangePositions(start, start + scores.Length), scores);

    /// <summary>A head's scores of the positions; for a KV head, the maximum over its query heads, all of them scored
    /// in one pass over the rows.</summary>
    private void GroupScores<TPositions>(int head, SelectionGranularity g, TPositions positions, Span<float> scores)
        where TPositions : struct, IPositions
    {
        var (first, count, kv) = Heads(head, g);
        int n = positions.Count;
        if (scores.Length < n) throw new ArgumentException("The score span is shorter than the positions scored.", nameof(scores));
        _keysScored += n;
        if (count > 1 && _scratch.Length < count * n) _scratch = new float[Math.Max(count * n, 2 * _scratch.Length)];
        byte** rows = stackalloc byte*[2 * KeyScores.RowBlock];
        fixed (float* q = _query, s = scores, all = _scratch)
        {
            if (count == 1)
            {
                KeyScores.Compute(_cache, Layer, kv, q + first * D, 1, positions, _scale, s, 0, rows);
                return;
            }
            KeyScores.Compute(_cache, Layer, kv, q + first * D, count, positions, _scale, all, n, rows);
        }
        MaxOfRows(_scratch, count, n, scores[..n]);
    }

    public int TopK(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, Span<int> result)
    {
        if (_scratch.Length < scores.Length) _scratch = new float[scores.Length];
        return Cpu.TopK.Select(scores, candidates, k, result, _scratch);
    }

    /// <summary>Quest's bound Σ_j max(q_j·min_j, q_j·max_j)·scale per page, widened by the worst-case rounding of
    /// f32 products and sums of this length (4·γ_d·Σ_j max(|q_j·min_j|, |q_j·max_j|), γ_d = (d+2)·2⁻²³) so that it
    /// bounds the scores the kernels actually compute, not only exact ones. Each page summary counts as one key.</summary>
    public void PageUpperBounds(int head, SelectionGranularity g, Span<float> bounds)
    {
        var (first, count, kv) = Heads(head, g);
        // the maximum of the heads' widened bounds (BackendMath.WidenedPageBound) is the widened maximum
        FromGroup(bounds: true, first, count, kv, (Context + PageSize - 1) / PageSize, bounds);
    }

    /// <summary>_groupScores[i·n + j] = the score of position j for query head i of KV head kv, j in [start, end).</summary>
    private void GroupKeyScores(int kv, int start, int end, int n)
    {
        byte** rows = stackalloc byte*[2 * KeyScores.RowBlock];
        int group = Group;
        fixed (float* q = _query, all = _groupScores)
            KeyScores.Compute(_cache, Layer, kv, q + kv * group * D, group, new RangePositions(start, end), _scale, all + start, n, rows);
    }

    /// <summary>_groupBounds[i·pages + p] = the bound of page p for query head i of KV head kv, p in [start, end),
    /// every page's summary read once.</summary>
    private void GroupPageBounds(int kv, int start, int end, int pages)
    {
        int d = D, group = Group;
        int summaryBytes = 2 * d * sizeof(float);
        fixed (float* query = _query, bounds = _groupBounds)
            for (int p = start; p < end; p++)
            {
                // a head's summaries are contiguous only within a cache segment: request a few pages ahead
                if (Sse.IsSupported && p + SummaryLookahead < end)
                    for (int o = 0; o < summaryBytes; o += 64) Sse.Prefetch0((byte*)_cache.KeyMin(Layer, kv, p + SummaryLookahead) + o);
                float* mn = _cache.KeyMin(Layer, kv, p), mx = _cache.KeyMax(Layer, kv, p);
                for (int i = 0; i < group; i++)
                {
                    PageBound(query + (kv * group + i) * d, mn, mx, d, out float sum, out float magnitude);
                    bounds[(long)i * pages + p] = BackendMath.WidenedPageBound(sum, magnitude, _scale, d);
                }
            }
    }

    /// <summary>Fewest positions (pages) one core takes of a group's scores (bounds): below it the split costs more
    /// than it saves.</summary>
    private const int MinScoresPiece = 1024, MinBoundsPiece = 128;

    /// <summary>A group's scores or page bounds split into pieces over the worker pool (bound once: no allocation).
    /// Selection runs between the step's parallel regions, so the other cores are idle otherwise.</summary>
    private sealed class GroupPass(CpuSelectionBackend owner) : ParallelWork
    {
        private bool _bounds;
        private int _kv, _total, _pieces;

        public void Run(bool bounds, int kv, int total, int minPiece)
        {
            var pool = WorkerPool.Shared;
            (_bounds, _kv, _total, _pieces) = (bounds, kv, total, Math.Clamp(total / minPiece, 1, 2 * pool.Threads));
            pool.Run(this, _pieces);
        }

        public override void Execute(int item, int worker)
        {
            int start = (int)((long)_total * item / _pieces), end = (int)((long)_total * (item + 1) / _pieces);
            if (_bounds) owner.GroupPageBounds(_kv, start, end, _total);
            else owner.GroupKeyScores(_kv, start, end, _total);
        }
    }

    /// <summary>Pages whose summaries are requested ahead of the one being bounded.</summary>
    private const int SummaryLookahead = 6;

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

    public int QueryLength(SelectionGranularity g) => HeadQueries.Length(g, D, Group);

    public void CopyQuery(int head, SelectionGranularity g, Span<float> destination) =>
        HeadQueries.Copy(_query, head, g, D, Group, destination);

    public float QueryCosine(int head, SelectionGranularity g, ReadOnlySpan<float> reference) =>
        HeadQueries.Cosine(_query, head, g, D, Group, reference);
}
