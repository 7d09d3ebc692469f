using BenchmarkDotNet.Attributes;
using SparseDecode.Cpu;
using SparseDecode.Selection;

namespace SparseDecode.Benchmarks;

/// <summary>Per-layer decode attention at Llama-3.1-8B head shapes with a bf16 cache: dense attention, exact
/// top-k selection over all keys, and sparse attention over a 2048-key index list — on one core and on all cores.</summary>
// In-process: no project is generated and built per run, so the benchmarks also run from a self-contained publish
// on a machine without the SDK (the numbers in docs/performance.md were taken that way).
[InProcess]
[WarmupCount(2)]
[IterationCount(5)]
[MemoryDiagnoser]
public unsafe class AttentionBenchmarks
{
    [Params(8192, 32768, 131072)]
    public int Context;

    [Params(1, 0)] // 1 = one core, 0 = all cores
    public int Threads;

    private const int Budget = 2048;
    private LayerCache _layer = null!;
    private float[][] _scratch = null!;
    private float[] _output = null!;
    private int[][] _indices = null!;
    private CpuSelectionBackend _backend = null!;
    private float[] _scores = null!;
    private int[] _topk = null!;
    private GroupedDecodeAttention _grouped = null!;
    private float[] _groupScores = null!;
    private readonly float[] _groupMax = new float[4], _groupSum = new float[4], _groupPartial = new float[4 * 128];
    private LayerSelection _kvSelection = null!;

    [GlobalSetup]
    public void Setup()
    {
        _layer = new LayerCache(Context);
        _scratch = Enumerable.Range(0, LayerCache.QueryHeads).Select(_ => new float[Context]).ToArray();
        _output = new float[LayerCache.QueryHeads * LayerCache.HeadDim];
        var rng = new Random(3);
        _indices = Enumerable.Range(0, LayerCache.QueryHeads)
            .Select(_ => Enumerable.Range(0, Context).OrderBy(_ => rng.Next()).Take(Budget).Order().ToArray()).ToArray();
        _backend = new CpuSelectionBackend(_layer.Cache, LayerCache.QueryHeads, 1f / MathF.Sqrt(LayerCache.HeadDim));
        _backend.Bind(0, _layer.Query, Context);
        _scores = new float[Context];
        _topk = new int[Budget];
        _grouped = new GroupedDecodeAttention(LayerCache.QueryHeads, LayerCache.KvHeads, LayerCache.HeadDim, Context);
        _groupScores = new float[4 * Context];
        _kvSelection = new LayerSelection(LayerCache.KvHeads, Context, SelectionGranularity.KvHead);
        for (int kv = 0; kv < LayerCache.KvHeads; kv++)
        {
            _indices[kv].CopyTo(_kvSelection.Buffer(kv));
            _kvSelection.SetCount(kv, Budget);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _layer.Dispose();

    private void ForHeads(Action<int> body)
    {
        if (Threads == 1) for (int h = 0; h < LayerCache.QueryHeads; h++) body(h);
        else Parallel.For(0, LayerCache.QueryHeads, body);
    }

    [Benchmark(Baseline = true)]
    public void DenseAttention() => ForHeads(h =>
    {
        fixed (float* q = _layer.Query, o = _output)
            AttentionKernels.AttendAll(_layer.Cache, 0, h / 4, q + h * 128, Context, 0.088f, _scratch[h], o + h * 128);
    });

    [Benchmark]
    public void SparseAttention2048() => ForHeads(h =>
    {
        fixed (float* q = _layer.Query, o = _output)
            AttentionKernels.Attend(_layer.Cache, 0, h / 4, q + h * 128, _indices[h], 0.088f, _scratch[h], o + h * 128);
    });

    /// <summary>Dense attention as the engine runs it: the 4 query heads of a KV head together, so each key and value
    /// row is read once per layer, not once per query head; on all cores the positions are split into parts.</summary>
    [Benchmark]
    public void DenseAttentionGrouped()
    {
        if (Threads == 0)
        {
            _grouped.Run(_layer.Cache, 0, _layer.Query, _output, Context, 0.088f);
            return;
        }
        // one core: the engine's per-part kernel and combination, one part per KV head, no parallel loop
        fixed (float* q = _layer.Query, o = _output, sc = _groupScores, mx = _groupMax, sm = _groupSum, pt = _groupPartial)
            for (int kv = 0; kv < LayerCache.KvHeads; kv++)
            {
                GroupAttention.Range(_layer.Cache, 0, kv, q + kv * 4 * 128, 4, 0, Context, 0.088f, sc, Context, mx, sm, pt);
                GroupAttention.Combine(1, 4, 128, mx, sm, pt, o + kv * 4 * 128);
            }
    }

    /// <summary>Sparse attention over one 2048-key list per KV head, grouped as above (the KV-head-granularity methods).</summary>
    [Benchmark]
    public void SparseAttentionGrouped2048()
    {
        if (Threads == 0)
        {
            _grouped.Run(_layer.Cache, 0, _layer.Query, _output, Context, 0.088f, _kvSelection);
            return;
        }
        fixed (float* q = _layer.Query, o = _output, sc = _groupScores, mx = _groupMax, sm = _groupSum, pt = _groupPartial)
            for (int kv = 0; kv < LayerCache.KvHeads; kv++)
            {
                GroupAttention.Indexed(_layer.Cache, 0, kv, q + kv * 4 * 128, 4, _indices[kv], 0.088f, sc, Budget, mx, sm, pt);
                GroupAttention.Combine(1, 4, 128, mx, sm, pt, o + kv * 4 * 128);
            }
    }

    /// <summary>Exact top-2048 per KV head (group scores: max over its 4 query heads): the oracle's selection cost.</summary>
    [Benchmark]
    public int ExactTopK2048()
    {
        int total = 0;
        for (int kv = 0; kv < LayerCache.KvHeads; kv++)
        {
            _backend.ScoreAll(kv, SelectionGranularity.KvHead, _scores);
            total += _backend.TopK(_scores, default, Budget, _topk);
        }
        return total;
    }
}
