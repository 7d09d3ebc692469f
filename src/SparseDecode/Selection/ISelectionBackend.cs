namespace SparseDecode.Selection;

/// <summary>The operations a selector may ask for at one layer of one decode step. Selectors are policies:
/// all arithmetic over keys and queries (scores, top-k, page bounds, query similarity, candidate sets) happens
/// here, so the same policy runs on any backend. `head` is a query head or a KV head per `granularity`;
/// with KvHead, a key's score is the maximum over the query heads of the group.</summary>
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
}
