using SparseDecode.Selection;

namespace SparseDecode.Cuda;

/// <summary>The selection operations of one layer of one decode step, for a selector policy running on the host
/// (src/SparseDecode/Selection, unchanged) against a sequence decoded on the GPU: scores and Quest page-bound
/// terms are computed by kernels over the GPU's bf16 cache and copied back; top-k, the rounding widening of the
/// page bounds, query copies and similarities run on the host, as the CPU backend does them. Every call is a
/// host round trip (one launch, one synchronising copy): a correctness path, not a fast one.</summary>
public sealed class GpuSelectionBackend : ISelectionBackend, IDisposable
{
    private readonly GpuModel _model;
    private readonly GpuKvCache _cache;
    private readonly CudaStream _stream;
    private readonly DeviceBuffer _indices, _scores, _terms;
    private readonly float[] _query;
    private float[] _termsHost = [];
    private float[] _scratch = new float[1024];
    private KvView _kv;
    private readonly float _scale;

    public GpuSelectionBackend(GpuModel model, GpuKvCache cache, CudaStream stream)
    {
        _model = model;
        _cache = cache;
        _stream = stream;
        var c = model.Config;
        int pages = cache.PageCapacity;
        _indices = model.Device.Allocate(cache.Capacity * 4L);
        _scores = model.Device.Allocate(cache.Capacity * 4L);
        _terms = model.Device.Allocate((long)c.GroupSize * pages * 8);
        _query = new float[c.QDim];
        _scale = 1f / MathF.Sqrt(c.HeadDim);
    }

    /// <summary>Binds the backend to `layer` of the step in flight (row 0, slot of that row): copies its rotated
    /// queries back (the stream is synchronised first).</summary>
    public void Bind(int layer, int context)
    {
        Layer = layer;
        Context = context;
        KeysScored = 0;
        _kv = _cache.View(layer, 1, context);
        _stream.Synchronize();
        _model.Queries.Download<float>(_query);
    }

    public int Layer { get; private set; }
    public int Context { get; private set; }
    public int QueryHeads => _model.Config.NumHeads;
    public int KvHeads => _model.Config.NumKvHeads;
    public int PageSize => _cache.PageSize;
    public long KeysScored { get; private set; }
    private int Group => _model.Config.GroupSize;
    private int D => _model.Config.HeadDim;

    private (int First, int Count, int Kv) Heads(int head, SelectionGranularity g) => HeadQueries.Heads(head, g, Group);

    public void ScoreAll(int head, SelectionGranularity g, Span<float> scores) => ScoreRange(head, g, 0, scores[..Context]);

    public void ScoreRange(int head, SelectionGranularity g, int start, Span<float> scores) => Scores(head, g, null, start, scores);

    public void Score(int head, SelectionGranularity g, ReadOnlySpan<int> indices, Span<float> scores)
    {
        if (indices.IsEmpty) return;
        _indices.UploadAsync(indices, _stream);
        Scores(head, g, _indices, 0, scores[..indices.Length]);
    }

    private void Scores(int head, SelectionGranularity g, DeviceBuffer? indices, int start, Span<float> scores)
    {
        if (scores.IsEmpty) return;
        var (first, count, kv) = Heads(head, g);
        KeysScored += scores.Length;
        _model.Kernels.SelectScores(_kv, D, kv, _model.Queries, first, count, indices, start, scores.Length, _scale, _scores, _stream);
        _stream.Synchronize();
        _scores.Download(scores);
    }

    public int TopK(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, Span<int> result)
    {
        if (_scratch.Length < scores.Length) _scratch = new float[scores.Length];
        return Kernels.TopK.Select(scores, candidates, k, result, _scratch);
    }

    /// <summary>Quest's bound per page, widened for the rounding of f32 products and sums exactly as
    /// CpuSelectionBackend widens it (4·γ_d·magnitude, γ_d = (d+2)·2⁻²³), from terms the GPU computes.</summary>
    public void PageUpperBounds(int head, SelectionGranularity g, Span<float> bounds)
    {
        var (first, count, kv) = Heads(head, g);
        int pages = (Context + PageSize - 1) / PageSize;
        KeysScored += pages;
        _model.Kernels.SelectPageTerms(_kv, D, kv, _model.Queries, first, count, pages, _terms, _stream);
        _stream.Synchronize();
        if (_termsHost.Length < 2 * count * pages) _termsHost = new float[2 * count * pages];
        _terms.Download<float>(_termsHost.AsSpan(0, 2 * count * pages));
        for (int p = 0; p < pages; p++)
        {
            float best = float.NegativeInfinity;
            for (int h = 0; h < count; h++)
                best = Math.Max(best, BackendMath.WidenedPageBound(_termsHost[2 * (h * pages + p)], _termsHost[2 * (h * pages + p) + 1], _scale, D));
            bounds[p] = best;
        }
    }

    public int QueryLength(SelectionGranularity g) => HeadQueries.Length(g, D, Group);

    public void CopyQuery(int head, SelectionGranularity g, Span<float> destination) =>
        HeadQueries.Copy(_query, head, g, D, Group, destination);

    public float QueryCosine(int head, SelectionGranularity g, ReadOnlySpan<float> reference) =>
        HeadQueries.Cosine(_query, head, g, D, Group, reference);

    public void Dispose()
    {
        _indices.Dispose();
        _scores.Dispose();
        _terms.Dispose();
    }
}
