using System.Numerics.Tensors;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The query-side operations every selection backend shares, over a layer's rotated queries
/// [queryHeads][headDim] on the host: which query heads a selection head stands for, their copy, and the cosine
/// with a stored copy (PrHS's drift trigger).</summary>
public static class HeadQueries
{
    /// <summary>First query head, query heads, and KV head of selection head `head`.</summary>
    public static (int First, int Count, int Kv) Heads(int head, SelectionGranularity g, int group) =>
        g == SelectionGranularity.QueryHead ? (head, 1, head / group) : (head * group, group, head);

    public static int Length(SelectionGranularity g, int headDim, int group) =>
        g == SelectionGranularity.QueryHead ? headDim : headDim * group;

    public static void Copy(ReadOnlySpan<float> query, int head, SelectionGranularity g, int headDim, int group, Span<float> destination)
    {
        var (first, count, _) = Heads(head, g, group);
        query.Slice(first * headDim, count * headDim).CopyTo(destination);
    }

    public static float Cosine(ReadOnlySpan<float> query, int head, SelectionGranularity g, int headDim, int group, ReadOnlySpan<float> reference)
    {
        var (first, count, _) = Heads(head, g, group);
        return TensorPrimitives.CosineSimilarity(query.Slice(first * headDim, count * headDim), reference);
    }
}
