namespace SparseDecode.Cuda;

/// <summary>The attention methods a GPU decode step can run per layer.</summary>
public enum StepMethod { Dense, Tidal, Lfps, Quest, Prhs }

/// <summary>Each method's per-layer selection and attention inside a decode step, composed from the decode
/// kernels as the per-layer benchmark composes them (selection per KV head: a key's score is the max over its
/// group; budget keys per KV head):
/// tidal — layers below `start` dense; layers `start` and `reselect` score every key, keep the top budget and attend
/// densely; every other layer attends sparsely to the last kept set.
/// lfps — scores of the candidate keys, top budget among them, sparse attention (the candidates are fixed random
/// lists here: which candidates the past steps suggest does not change the cost).
/// quest — the new key's page summary refreshed, page bounds, top budget/pageSize pages expanded to their keys,
/// sparse attention.
/// prhs — per layer a kept set: re-selected (all scores + top-k) on retrieval steps (<see cref="Retrieval"/>, one
/// step in `PrhsBlock`), verified every step (kept keys scored per query head, page bounds per query head, the
/// `PrhsRefinePages` best pages scored exactly), attended sparsely. The verification's outcome is computed but not
/// folded back into the kept set on the GPU.</summary>
public sealed class StepAttention : ILayerAttention, IDisposable
{
    public StepMethod Method { get; }
    public int Budget { get; }
    public int Context { get; }
    public int Rows { get; }
    public int TidalStart { get; }
    public int TidalReselect { get; }
    public int Candidates { get; }
    public int PageSize { get; }
    public int PrhsRefinePages { get; } = 64;
    public int PrhsBlock { get; } = 16;
    /// <summary>prhs: whether the step being queued re-selects the kept sets.</summary>
    public bool Retrieval { get; set; }

    private readonly DecodeKernels _k;
    private readonly ModelKernels _mk;
    private readonly ulong _positions;
    private readonly int _kvHeads, _qHeads, _headDim, _pages, _strideN, _strideP, _strideC, _strideB;
    private readonly List<DeviceBuffer> _owned = [];
    private readonly DeviceBuffer _scores, _selected, _bounds, _limits, _limitsQ;
    private readonly DeviceBuffer? _candidates, _candScores, _keptScores, _refine, _refineScores;
    private readonly DeviceBuffer[] _kept = [];
    private readonly DecodeKernels.TopKWorkspace _topk;

    public StepAttention(GpuModel model, GpuKvCache cache, StepMethod method, int rows, int context, int budget, int candidateFactor = 3, uint seed = 5)
    {
        var c = model.Config;
        if (method != StepMethod.Dense && !model.TunedAttention)
            throw new ArgumentException("The sparse methods run on the GPU for heads of 128 channels in groups of 4 or 8.");
        _k = model.DecodeKernels;
        _mk = model.Kernels;
        _positions = cache.Positions;
        Method = method;
        Budget = budget;
        Context = context;
        Rows = rows;
        PageSize = cache.PageSize;
        TidalStart = Math.Max(1, (int)Math.Round(2.0 / 32 * c.NumLayers));
        TidalReselect = Math.Max(TidalStart + 1, (int)Math.Round(13.0 / 32 * c.NumLayers));
        Candidates = Math.Min(context, budget * candidateFactor);
        _kvHeads = c.NumKvHeads;
        _qHeads = c.NumHeads;
        _headDim = c.HeadDim;
        _pages = (context + PageSize - 1) / PageSize;
        _strideN = LaunchPlan.ScoreStride(context);
        _strideP = LaunchPlan.ScoreStride(_pages);
        _strideB = LaunchPlan.ScoreStride(budget);
        _strideC = LaunchPlan.ScoreStride(Math.Max(Candidates, PrhsRefinePages * PageSize));
        var dev = model.Device;
        DeviceBuffer Own(long bytes) { var b = dev.Allocate(Math.Max(bytes, 16)); _owned.Add(b); return b; }
        int rowsKv = rows * _kvHeads, rowsQ = rows * _qHeads;
        bool needsAll = method is StepMethod.Tidal or StepMethod.Prhs;
        _scores = Own(needsAll ? (long)rowsKv * _strideN * 4 : 16);
        _selected = Own((long)rowsKv * budget * 4);
        _bounds = Own((long)rowsQ * _strideP * 4);
        _limits = Own(rowsQ * 4L);
        _limitsQ = _limits;
        _limits.Upload<int>(Enumerable.Repeat(context, rowsQ).ToArray());
        _topk = new DecodeKernels.TopKWorkspace(dev, rowsQ, Math.Max(context, Candidates));
        var rng = new Random((int)seed);
        if (method == StepMethod.Lfps)
        {
            _candidates = Own((long)rowsKv * Candidates * 4);
            _candidates.Upload<int>(SortedLists(rng, rowsKv, Candidates, context));
            _candScores = Own((long)rowsKv * _strideC * 4);
        }
        if (method == StepMethod.Prhs)
        {
            _kept = Enumerable.Range(0, c.NumLayers).Select(_ => Own((long)rowsKv * budget * 4)).ToArray();
            _keptScores = Own((long)rowsQ * _strideB * 4);
            _refine = Own((long)rowsQ * PrhsRefinePages * PageSize * 4);
            _refineScores = Own((long)rowsQ * _strideC * 4);
        }
    }

    public void Enqueue(GpuModel m, int layer, in KvView kv, CudaStream s)
    {
        int rowsKv = Rows * _kvHeads, rowsQ = Rows * _qHeads;
        switch (Method)
        {
            case StepMethod.Dense:
                m.DenseAttention(kv, s);
                return;
            case StepMethod.Tidal:
                if (layer < TidalStart) { m.DenseAttention(kv, s); return; }
                if (layer == TidalStart || layer == TidalReselect)
                {
                    SelectAll(kv, m.Queries, _selected, s);
                    m.DenseAttention(kv, s);
                    return;
                }
                Sparse(m, kv, _selected, s);
                return;
            case StepMethod.Lfps:
                _k.Score(kv, m.Queries, _candidates, Candidates, IndexHeads.KvHead, IndexHeads.KvHead, _candScores!, _strideC, s);
                _k.TopK(new(_candScores!, rowsKv, _strideC, Candidates, Budget, _selected, Budget) { Candidates = _candidates, CandidateStride = Candidates }, _topk, s);
                Sparse(m, kv, _selected, s);
                return;
            case StepMethod.Quest:
                _mk.PageUpdate(kv, _positions, _headDim, s);
                _k.PageBounds(kv, m.Queries, IndexHeads.KvHead, _bounds, _strideP, s);
                _k.TopK(new(_bounds, rowsKv, _strideP, _pages, Budget / PageSize, _selected, Budget) { Expand = PageSize, Limits = _limits }, _topk, s);
                Sparse(m, kv, _selected, s);
                return;
            case StepMethod.Prhs:
                var kept = _kept[layer];
                if (Retrieval) SelectAll(kv, m.Queries, kept, s);
                _mk.PageUpdate(kv, _positions, _headDim, s);
                _k.Score(kv, m.Queries, kept, Budget, IndexHeads.KvHead, IndexHeads.QueryHead, _keptScores!, _strideB, s);
                _k.PageBounds(kv, m.Queries, IndexHeads.QueryHead, _bounds, _strideP, s);
                int rp = PrhsRefinePages * PageSize;
                _k.TopK(new(_bounds, rowsQ, _strideP, _pages, PrhsRefinePages, _refine!, rp) { Expand = PageSize, Limits = _limitsQ }, _topk, s);
                _k.Score(kv, m.Queries, _refine, rp, IndexHeads.QueryHead, IndexHeads.QueryHead, _refineScores!, _strideC, s);
                Sparse(m, kv, kept, s);
                return;
        }
    }

    private void SelectAll(in KvView kv, DeviceBuffer q, DeviceBuffer into, CudaStream s)
    {
        _k.Score(kv, q, null, 0, IndexHeads.KvHead, IndexHeads.KvHead, _scores, _strideN, s);
        _k.TopK(new(_scores, Rows * _kvHeads, _strideN, Context, Budget, into, Budget), _topk, s);
    }

    private void Sparse(GpuModel m, in KvView kv, DeviceBuffer indices, CudaStream s) =>
        _k.Attention(kv, m.Queries, indices, Budget, IndexHeads.KvHead, m.AttentionOutput, null, m.Workspace, s);

    /// <summary>Bytes one step must read for attention and selection in `layer`, per row (K/V rows with their
    /// index entries, scores written and read back, page summaries); prhs's retrieval counted 1/PrhsBlock.</summary>
    public double LayerBytesPerRow(int layer)
    {
        double hd = _headDim, n = Context, kvh = _kvHeads, qh = _qHeads, b = Budget;
        double dense = kvh * n * hd * 4, sparse = kvh * b * (hd * 4 + 4), keys = kvh * n * hd * 2 + kvh * n * 8;
        double summaries = kvh * _pages * hd * 4;
        switch (Method)
        {
            case StepMethod.Dense: return dense;
            case StepMethod.Tidal:
                return layer < TidalStart ? dense : layer == TidalStart || layer == TidalReselect ? dense + keys : sparse;
            case StepMethod.Lfps: return kvh * Candidates * (hd * 2 + 12) + sparse;
            case StepMethod.Quest: return summaries + kvh * _pages * 8 + sparse;
            default:
                double verify = kvh * b * (hd * 2 + 4) + summaries + qh * _pages * 8 + qh * PrhsRefinePages * PageSize * (hd * 2 + 4);
                return verify + sparse + keys / PrhsBlock;
        }
    }

    internal static int[] SortedLists(Random rng, int rows, int count, int n)
    {
        var all = new int[rows * count];
        var pick = new HashSet<int>();
        for (int r = 0; r < rows; r++)
        {
            pick.Clear();
            if (count >= n) for (int p = 0; p < count; p++) pick.Add(p < n ? p : -1 - p);
            while (pick.Count < count) pick.Add(rng.Next(n));
            pick.Select(p => p < 0 ? -1 : p).Order().ToArray().CopyTo(all, r * count);
        }
        return all;
    }

    public void Dispose()
    {
        foreach (var b in _owned) b.Dispose();
        _topk.Dispose();
    }
}
