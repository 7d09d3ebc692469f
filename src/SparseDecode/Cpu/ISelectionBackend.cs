using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The key-reading operations the CPU's plan executor (<see cref="SpanPlanOps"/>) runs a plan's operations
/// with, at one layer of one decode step: scores, top-k, page bounds, query similarity and candidate sets. `head` is a query head or a KV head per `granularity`;
/// with KvHead, a key's score is the maximum over the query heads of the group.</summary>
/// <remarks>The members after <see cref="KeysScored"/> build candidates (LFPS, PrHS). Each has a portable default
/// written with the members above it; CpuSelectionBackend implements the score-reading ones directly.</remarks>
public interface ISelectionBackend
{
    int Layer { get; }
    /// <summary>Positions in the cache, the current token's included.</summary>
    int Context { get; }
    int QueryHeads { get; }
    int KvHeads { get; }
    int PageSize { get; }

    int HeadsFor(SelectionGranularity g) => g == SelectionGranularity.QueryHead ? QueryHeads : KvHeads;

    /// <summary>Scores q·k/√d of every position (index cost: Context keys).</summary>
    void ScoreAll(int head, SelectionGranularity g, Span<float> scores);

    /// <summary>Scores of the given positions (index cost: indices.Length keys).</summary>
    void Score(int head, SelectionGranularity g, ReadOnlySpan<int> indices, Span<float> scores);

    /// <summary>The k positions of largest score, ascending by position. candidates[j] is the position of
    /// scores[j]; an empty candidates span means scores[j] belongs to position j. Returns how many were written.</summary>
    int TopK(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, Span<int> result);

    /// <summary>Per page, an upper bound of q·k/√d over the page's keys, from the per-channel min/max summaries
    /// (index cost: one summary per page).</summary>
    void PageUpperBounds(int head, SelectionGranularity g, Span<float> bounds);

    /// <summary>Cosine similarity of the head's current query with a stored one (PrHS's drift trigger).</summary>
    float QueryCosine(int head, SelectionGranularity g, ReadOnlySpan<float> reference);

    /// <summary>Copies the head's current query (length headDim × group for KvHead).</summary>
    void CopyQuery(int head, SelectionGranularity g, Span<float> destination);

    int QueryLength(SelectionGranularity g);

    /// <summary>Keys scored so far at this layer and step: the index cost the observer reports.</summary>
    long KeysScored { get; }

    /// <summary>Scores of the positions [start, start + scores.Length) (index cost: scores.Length keys).</summary>
    void ScoreRange(int head, SelectionGranularity g, int start, Span<float> scores)
    {
        Span<int> chunk = stackalloc int[256];
        for (int done = 0; done < scores.Length; done += chunk.Length)
        {
            int m = Math.Min(chunk.Length, scores.Length - done);
            for (int j = 0; j < m; j++) chunk[j] = start + done + j;
            Score(head, g, chunk[..m], scores.Slice(done, m));
        }
    }

    /// <summary>Candidate widening (LFPS's slash + positional expansion, PrHS's dilation): the sorted,
    /// duplicate-free union of [p + shift − radius, p + shift + radius] over the ascending positions p, clipped
    /// to [0, Context). result needs sorted.Length × (2·radius + 1) entries. Returns the count written.</summary>
    int Expand(ReadOnlySpan<int> sorted, int shift, int radius, Span<int> result) =>
        BackendMath.Expand(sorted, shift, radius, Context, result);

    /// <summary>Sorted union of two ascending, duplicate-free position lists; result must not overlap them.</summary>
    int Union(ReadOnlySpan<int> a, ReadOnlySpan<int> b, Span<int> result) => BackendMath.Union(a, b, result);

    /// <summary>Sorted union of an ascending position list with the positions [start, end) ∩ [0, Context).</summary>
    int UnionRange(ReadOnlySpan<int> a, int start, int end, Span<int> result) =>
        BackendMath.UnionRange(a, Math.Max(0, start), Math.Min(end, Context), result);
}
