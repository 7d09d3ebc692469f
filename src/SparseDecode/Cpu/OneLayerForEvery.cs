using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>A selection backend that reports layer `Layer` to the selector while reading every key from the one
/// layer its inner backend is bound to: a one-layer cache stands in for every layer of a deep model, where only the
/// selection cost matters (it depends on the context and the budget, not on the values). Used by the benchmarks
/// (<see cref="AttentionOperatorBench"/>) to time every layer's plan against one layer of a long cache.</summary>
public sealed class OneLayerForEvery(CpuSelectionBackend inner) : ISelectionBackend
{
    /// <summary>The layer the selector sees (its per-layer decisions: dense layers, Tidal's selection layers).</summary>
    public int Layer { get; set; }
    public int Context => inner.Context;
    public int QueryHeads => inner.QueryHeads;
    public int KvHeads => inner.KvHeads;
    public int PageSize => inner.PageSize;
    public long KeysScored => inner.KeysScored;

    public void ScoreAll(int head, SelectionGranularity g, Span<float> scores) => inner.ScoreAll(head, g, scores);
    public void Score(int head, SelectionGranularity g, ReadOnlySpan<int> indices, Span<float> scores) => inner.Score(head, g, indices, scores);
    public void ScoreRange(int head, SelectionGranularity g, int start, Span<float> scores) => inner.ScoreRange(head, g, start, scores);
    public int TopK(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, Span<int> result) => inner.TopK(scores, candidates, k, result);
    public void PageUpperBounds(int head, SelectionGranularity g, Span<float> bounds) => inner.PageUpperBounds(head, g, bounds);
    public float QueryCosine(int head, SelectionGranularity g, ReadOnlySpan<float> reference) => inner.QueryCosine(head, g, reference);
    public void CopyQuery(int head, SelectionGranularity g, Span<float> destination) => inner.CopyQuery(head, g, destination);
    public int QueryLength(SelectionGranularity g) => inner.QueryLength(g);
}
