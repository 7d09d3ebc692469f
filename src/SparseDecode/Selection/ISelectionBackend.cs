using System.Buffers;

namespace SparseDecode.Selection;

/// <summary>The operations a selector may ask for at one layer of one decode step. Selectors are policies:
/// all arithmetic over keys and queries (scores, top-k, page bounds, query similarity, candidate sets) happens
/// here, so the same policy runs on any backend. `head` is a query head or a KV head per `granularity`;
/// with KvHead, a key's score is the maximum over the query heads of the group.</summary>
/// <remarks>The members after <see cref="KeysScored"/> were added for the candidate-building and dropped-mass
/// methods (LFPS, PrHS). Each has a portable default written with the members above it, so a backend that does
/// not implement them still works; CpuSelectionBackend implements the score-reading ones directly.</remarks>
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

    // ------------------------------------------------------------------ added for LFPS and PrHS

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

    /// <summary>Exact dropped mass Σ_{i∉S} softmax(s)_i, from the scores of every position (no keys read).</summary>
    double DroppedMass(ReadOnlySpan<float> allScores, ReadOnlySpan<int> selected) =>
        BackendMath.DroppedMass(allScores[..Context], selected);

    /// <summary>An upper bound of one query head's dropped mass for the ascending set `selected`: the kept keys
    /// are scored exactly and every other key is bounded by its page's min/max summary. Pages are then refined
    /// (their unselected keys scored exactly) in order of decreasing contribution — pages that share a strong
    /// selected key have loose bounds — until the bound is at most `target` or `refinePages` pages are done.
    /// Index cost: |selected| keys + one summary per page + the refined pages' unselected keys. A true bound of
    /// the mass under the scores the backend computes: with D̄ ≥ D the unselected sum, δ ≤ D̄/(K + D̄).</summary>
    double DroppedMassBound(int queryHead, ReadOnlySpan<int> selected, int refinePages, double target = 0)
    {
        int n = Context, ps = PageSize, pages = (n + ps - 1) / ps;
        refinePages = Math.Clamp(refinePages, 0, pages);
        var fp = ArrayPool<float>.Shared;
        var ip = ArrayPool<int>.Shared;
        float[] kept = fp.Rent(Math.Max(1, selected.Length)), bounds = fp.Rent(pages), page = fp.Rent(ps);
        int[] which = ip.Rent(Math.Max(1, refinePages)), positions = ip.Rent(ps);
        try
        {
            Score(queryHead, SelectionGranularity.QueryHead, selected, kept);
            var b = bounds.AsSpan(0, pages);
            PageUpperBounds(queryHead, SelectionGranularity.QueryHead, b);
            BackendMath.PageLogContributions(b, selected, n, ps);
            var k = kept.AsSpan(0, selected.Length);
            var state = new BackendMath.RefinedBound(k, b);
            int r = Math.Min(refinePages, BackendMath.CountFinite(b));
            if (r > 0 && state.Value > target)
            {
                r = TopK(b, default, r, which);
                BackendMath.SortByDescending(which.AsSpan(0, r), b);
                for (int i = 0; i < r && state.Value > target; i++)
                {
                    int m = BackendMath.UnselectedInPage(which[i], selected, n, ps, positions);
                    Score(queryHead, SelectionGranularity.QueryHead, positions.AsSpan(0, m), page);
                    state.Refine(which[i], page.AsSpan(0, m));
                }
            }
            return state.Final();
        }
        finally
        {
            fp.Return(kept);
            fp.Return(bounds);
            fp.Return(page);
            ip.Return(which);
            ip.Return(positions);
        }
    }

    /// <summary>An unbiased estimate of one query head's dropped mass for the ascending set `selected`: the kept
    /// keys are scored exactly and the unselected sum is extrapolated from `samples` unselected keys drawn
    /// uniformly by a generator seeded with `seed` (exact when no more than `samples` keys are unselected).
    /// Index cost: |selected| + samples keys.</summary>
    double DroppedMassEstimate(int queryHead, ReadOnlySpan<int> selected, int samples, ulong seed)
    {
        int n = Context, unselected = n - selected.Length;
        bool exact = unselected <= samples;
        int m = exact ? unselected : samples;
        var fp = ArrayPool<float>.Shared;
        float[] kept = fp.Rent(Math.Max(1, selected.Length)), drawn = fp.Rent(Math.Max(1, m));
        int[] positions = ArrayPool<int>.Shared.Rent(Math.Max(1, m));
        try
        {
            Score(queryHead, SelectionGranularity.QueryHead, selected, kept);
            BackendMath.SampleUnselected(selected, n, positions.AsSpan(0, m), exact, seed);
            Score(queryHead, SelectionGranularity.QueryHead, positions.AsSpan(0, m), drawn);
            return BackendMath.EstimatedDroppedMass(kept.AsSpan(0, selected.Length), drawn.AsSpan(0, m), unselected);
        }
        finally
        {
            fp.Return(kept);
            fp.Return(drawn);
            ArrayPool<int>.Shared.Return(positions);
        }
    }
}
