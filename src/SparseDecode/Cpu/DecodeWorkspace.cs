using SparseDecode.Selection;
using SparseDecode.Engine;
using SparseDecode.Model;

namespace SparseDecode.Cpu;

/// <summary>Every buffer one sequence's decode step needs, allocated once so that a step allocates nothing.</summary>
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
    /// <summary>The step's matrix-vector products, each region bound here once (no allocation per step).</summary>
    internal LinearWork Linear { get; } = new();
    internal GatedMlpWork Mlp { get; } = new();

    public DecodeWorkspace(Transformer model, KvCache cache, SelectionGranularity granularity = SelectionGranularity.QueryHead)
    {
        var c = model.Config;
        X = new float[c.HiddenSize];
        Xn = new float[c.HiddenSize];
        Q = new float[c.QDim];
        K = new float[c.KvDim];
        V = new float[c.KvDim];
        Att = new float[c.QDim];
        ObserverDenseOutput = new float[c.QDim];
        Gate = new float[c.IntermediateSize];
        Up = new float[c.IntermediateSize];
        Logits = new float[c.VocabSize];
        int heads = granularity == SelectionGranularity.QueryHead ? c.NumHeads : c.NumKvHeads;
        Selection = new LayerSelection(heads, cache.Capacity, granularity);
        Backend = new CpuSelectionBackend(cache, c.NumHeads, model.AttentionScale);
        Grouped = new GroupedDecodeAttention(c.NumHeads, c.NumKvHeads, c.HeadDim, cache.Capacity);
        _headScratch = new float[c.NumHeads][];
        for (int h = 0; h < c.NumHeads; h++) _headScratch[h] = new float[Math.Min(cache.Capacity, 4096)];
    }

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
