using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Tests.Selection;

/// <summary>A synthetic multi-layer KV cache with seeded random (or hand-set) keys, values and queries, driven
/// the way Transformer.Decode drives a selector: write the new position's keys, BeginStep, then per layer bind
/// the backend, select, and attend. What each layer selected, scored and produced is recorded.</summary>
internal sealed unsafe class SyntheticAttention : IDisposable
{
    public sealed record LayerResult(bool Dense, int[][] Indices, long KeysScored, float[] Output);

    private readonly Random _rng;
    public ModelConfig Config { get; }
    public KvCache Cache { get; }
    public CpuSelectionBackend Backend { get; }
    public float Scale { get; }
    /// <summary>This step's queries per layer (all query heads, QDim floats); set before Step to control them.</summary>
    public float[][] Queries { get; }
    public int D => Config.HeadDim;

    public SyntheticAttention(int layers, int heads, int kvHeads, int headDim, int capacity, int seed,
        DType type = DType.F32, int pageSize = 16)
    {
        _rng = new Random(seed);
        Config = ConfigFor(layers, heads, kvHeads, headDim, capacity);
        Cache = new KvCache(layers, kvHeads, headDim, type, capacity, pageSize);
        Scale = 1f / MathF.Sqrt(headDim);
        Backend = new CpuSelectionBackend(Cache, heads, Scale);
        Queries = new float[layers][];
        for (int l = 0; l < layers; l++) Queries[l] = new float[Config.QDim];
    }

    public static ModelConfig ConfigFor(int layers, int heads, int kvHeads, int headDim, int maxPositions = 4096) => new()
    {
        Architecture = Architecture.Llama,
        ArchitectureName = "LlamaForCausalLM",
        VocabSize = 16,
        HiddenSize = heads * headDim,
        IntermediateSize = 16,
        NumLayers = layers,
        NumHeads = heads,
        NumKvHeads = kvHeads,
        HeadDim = headDim,
        MaxPositions = maxPositions,
        RmsNormEps = 1e-6,
        Rope = new RopeScaling(RopeType.Default, 10000),
        TieEmbeddings = true,
        QkvBias = false,
        OutputBias = false,
        MlpBias = false,
    };

    public float Gaussian(float sigma = 1)
    {
        double u = 1 - _rng.NextDouble(), v = _rng.NextDouble();
        return (float)(sigma * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
    }

    public void RandomFill(Span<float> x, float sigma = 1)
    {
        for (int i = 0; i < x.Length; i++) x[i] = Gaussian(sigma);
    }

    /// <summary>Appends positions with random keys/values (all layers) until the cache holds n.</summary>
    public void FillTo(int n, float sigma = 1)
    {
        var k = new float[Config.KvDim];
        var v = new float[Config.KvDim];
        for (int pos = Cache.Length; pos < n; pos++)
        {
            for (int l = 0; l < Config.NumLayers; l++)
            {
                RandomFill(k, sigma);
                RandomFill(v);
                Cache.Write(l, pos, k, v);
            }
            Cache.Length = pos + 1;
        }
    }

    public void RandomQueries(float sigma = 1)
    {
        foreach (var q in Queries) RandomFill(q, sigma);
    }

    /// <summary>Key of (layer, kvHead, position) as attention reads it (after the cache's rounding).</summary>
    public float[] Key(int layer, int kvHead, int pos)
    {
        var r = new float[D];
        ElementConvert.ToSingle(Cache.Type, Cache.Key(layer, kvHead, pos), r);
        return r;
    }

    public float[] Value(int layer, int kvHead, int pos)
    {
        var r = new float[D];
        ElementConvert.ToSingle(Cache.Type, Cache.Value(layer, kvHead, pos), r);
        return r;
    }

    /// <summary>f64 scores q·k/√d of every position for one query head.</summary>
    public double[] NaiveScores(int layer, int queryHead, int n)
    {
        int kv = queryHead / Config.GroupSize;
        var s = new double[n];
        for (int p = 0; p < n; p++)
        {
            var k = Key(layer, kv, p);
            double dot = 0;
            for (int i = 0; i < D; i++) dot += (double)Queries[layer][queryHead * D + i] * k[i];
            s[p] = dot / Math.Sqrt(D);
        }
        return s;
    }

    /// <summary>f64 softmax of the scores over `indices` (all positions when null).</summary>
    public static double[] Softmax(double[] scores, IReadOnlyList<int>? indices = null)
    {
        int m = indices?.Count ?? scores.Length;
        var p = new double[m];
        double max = double.NegativeInfinity;
        for (int j = 0; j < m; j++) max = Math.Max(max, scores[indices?[j] ?? j]);
        double sum = 0;
        for (int j = 0; j < m; j++) sum += p[j] = Math.Exp(scores[indices?[j] ?? j] - max);
        for (int j = 0; j < m; j++) p[j] /= sum;
        return p;
    }

    /// <summary>f64 attention of one query head over the given positions.</summary>
    public double[] NaiveAttend(int layer, int queryHead, IReadOnlyList<int> indices)
    {
        int kv = queryHead / Config.GroupSize, n = Cache.Length;
        var all = NaiveScores(layer, queryHead, Math.Max(n, indices.Count == 0 ? 0 : indices.Max() + 1));
        var p = Softmax(all, indices);
        var o = new double[D];
        for (int j = 0; j < indices.Count; j++)
        {
            var v = Value(layer, kv, indices[j]);
            for (int i = 0; i < D; i++) o[i] += p[j] * v[i];
        }
        return o;
    }

    /// <summary>One decode step at position Cache.Length: new random keys/values (unless `write` is false: the
    /// caller wrote them), the selector chooses per layer, attention runs with the engine's kernels.</summary>
    public LayerResult[] Step(SpanPlanOps? selector, bool write = true)
    {
        int pos = Cache.Length, n = pos + 1;
        if (write)
        {
            var k = new float[Config.KvDim];
            var v = new float[Config.KvDim];
            for (int l = 0; l < Config.NumLayers; l++)
            {
                RandomFill(k);
                RandomFill(v);
                Cache.Write(l, pos, k, v);
            }
        }
        var g = selector?.Granularity ?? SelectionGranularity.QueryHead;
        var sel = new LayerSelection(g == SelectionGranularity.QueryHead ? Config.NumHeads : Config.NumKvHeads, Cache.Capacity, g);
        selector?.BeginStep(pos);
        var results = new LayerResult[Config.NumLayers];
        var scratch = new float[n];
        for (int l = 0; l < Config.NumLayers; l++)
        {
            sel.Dense = true;
            long scored = 0;
            if (selector is not null)
            {
                Backend.Bind(l, Queries[l], n);
                selector.Select(Backend, sel);
                scored = Backend.KeysScored;
            }
            var output = new float[Config.QDim];
            fixed (float* q = Queries[l], o = output)
                for (int h = 0; h < Config.NumHeads; h++)
                {
                    int kv = h / Config.GroupSize;
                    if (sel.Dense) AttentionKernels.AttendAll(Cache, l, kv, q + h * D, n, Scale, scratch, o + h * D);
                    else
                    {
                        int sh = g == SelectionGranularity.QueryHead ? h : kv;
                        AttentionKernels.Attend(Cache, l, kv, q + h * D, sel.Indices(sh), Scale, scratch, o + h * D);
                    }
                }
            var indices = new int[sel.Heads][];
            for (int h = 0; h < sel.Heads; h++) indices[h] = sel.Dense ? [] : sel.Indices(h).ToArray();
            results[l] = new LayerResult(sel.Dense, indices, scored, output);
        }
        Cache.Length = n;
        return results;
    }

    public void Dispose() => Cache.Dispose();
}
