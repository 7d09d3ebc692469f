using SparseDecode.Selection;
using SparseDecode.Engine;
using SparseDecode.Model;

namespace SparseDecode.Cpu;

/// <summary>Every buffer one sequence's decode step needs, allocated once so that a step allocates nothing. The
/// buffers the step's products read and write (X to Logits, bar the observer's) live on the pinned heap: a batched
/// step (<see cref="DecodeBatch"/>) reaches every row's through pointers.</summary>
public sealed class DecodeWorkspace
{
    private readonly float[][] _headScratch;
    private float[] _observer = [];

    public float[] X { get; }
    public float[] Xn { get; }
    public float[] Q { get; }
    public float[] K { get; }
    public float[] V { get; }
    public float[] Att { get; }
    /// <summary>The observer's dense attention output beside the method's (query heads × head_dim).</summary>
    public float[] ObserverDenseOutput { get; }
    public float[] Gate { get; }
    public float[] Up { get; }
    public float[] Logits { get; }
    public LayerSelection Selection { get; }
    public CpuSelectionBackend Backend { get; }
    /// <summary>Dense attention, and sparse attention selected per KV head: each K/V row read once per group.</summary>
    public GroupedDecodeAttention Grouped { get; }
    internal Transformer.PerHeadAttentionJob PerHeadAttention { get; } = new();
    /// <summary>The one-row batch of this workspace's sequence decoding alone.</summary>
    internal DecodeBatch Alone { get; } = new();

    /// <param name="denseOnly">The workspace of a row that always attends densely (a verification row of
    /// speculative decoding): no room for selection lists.</param>
    public DecodeWorkspace(Transformer model, KvCache cache, SelectionGranularity granularity = SelectionGranularity.QueryHead, bool denseOnly = false)
        : this(model.Config, model.AttentionScale, cache, granularity, denseOnly)
    {
    }

    /// <summary>The buffers of a model of shape `c` whose attention scales scores by `attentionScale`, over `cache`
    /// (for attention alone, without the model's weights: <see cref="AttentionOperatorBench"/>).</summary>
    /// <param name="denseOnly">As above: no room for selection lists.</param>
    public DecodeWorkspace(ModelConfig c, float attentionScale, KvCache cache, SelectionGranularity granularity = SelectionGranularity.QueryHead,
        bool denseOnly = false)
    {
        X = Pinned(c.HiddenSize);
        Xn = Pinned(c.HiddenSize);
        Q = Pinned(c.QDim);
        K = Pinned(c.KvDim);
        V = Pinned(c.KvDim);
        Att = Pinned(c.QDim);
        ObserverDenseOutput = new float[c.QDim];
        Gate = Pinned(c.IntermediateSize);
        Up = Pinned(c.IntermediateSize);
        Logits = Pinned(c.VocabSize);
        int heads = granularity == SelectionGranularity.QueryHead ? c.NumHeads : c.NumKvHeads;
        Selection = new LayerSelection(heads, denseOnly ? 0 : cache.Capacity, granularity);
        Backend = new CpuSelectionBackend(cache, c.NumHeads, attentionScale);
        Grouped = new GroupedDecodeAttention(c.NumHeads, c.NumKvHeads, c.HeadDim, cache.Capacity);
        _headScratch = new float[c.NumHeads][];
        for (int h = 0; h < c.NumHeads; h++) _headScratch[h] = new float[denseOnly ? 0 : Math.Min(cache.Capacity, 4096)];
    }

    private static float[] Pinned(int length) => GC.AllocateArray<float>(length, pinned: true);

    /// <summary>Score scratch of one query head for a list of `length` keys (the per-query-head sparse path; dense
    /// attention and lists per KV head use <see cref="Grouped"/>'s buffers). Grows by doubling, so a sequence
    /// reallocates it a few times at most; each head's array is touched only by that head's task.</summary>
    public Span<float> HeadScratch(int head, int length)
    {
        if (_headScratch[head].Length < length)
            _headScratch[head] = new float[Math.Max(length, 2 * _headScratch[head].Length)];
        return _headScratch[head];
    }

    public Span<float> ObserverScratch(int n)
    {
        if (_observer.Length < n) _observer = new float[Math.Max(n, 2 * _observer.Length)];
        return _observer;
    }
}
