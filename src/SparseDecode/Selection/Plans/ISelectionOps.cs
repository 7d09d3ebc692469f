namespace SparseDecode.Selection;

/// <summary>LFPS's state at one layer: the last steps' selections (list 0 the newest), the refresh decision of
/// this step (0 none, 1 due, 2 triggered by a score drop), the step of the last refresh, the best score at it
/// (ScoreSet of one entry), and counters of refreshes and of triggered ones.</summary>
public readonly record struct LfpsState(IndexSet History, FlagSet Refresh, FlagSet LastRefresh, ScoreSet ReferenceMax,
    FlagSet Refreshes, FlagSet Triggered);

/// <summary>LFPS's candidate rule: sinks and recent window always, each history list vertically (same positions)
/// and slashed (moved by the steps since it was written), each widened by ±radius; a full refresh is due on the
/// first step and every `Interval` steps (0: never periodically).</summary>
public readonly record struct LfpsRule(int Sinks, int Recent, int Radius, int Interval);

/// <summary>The operations a selection plan is written in. Each acts on every selection head of every sequence of
/// the step at once, over buffers the backend owns, and returns nothing: a backend may run it on spans now (the
/// CPU) or queue it as one kernel launch for a captured graph (the GPU). Per sequence, n is its context length
/// (the current token included) and k = budget.Resolve(n).</summary>
public interface ISelectionOps
{
    /// <summary>The layer whose queries and keys the operations read.</summary>
    int Layer { get; }

    /// <summary>dst[h][j] = q·k_j/√d for every position j &lt; n (max over the group's query heads per KV head).
    /// Index cost: n keys per head acted on.</summary>
    void ScoreAll(ScoreSet dst, HeadMask only = default);

    /// <summary>dst[h][j] = the score of position list[h][j] for j below the list's count. Index cost: the count.</summary>
    void ScoreList(IndexSet list, ScoreSet dst);

    /// <summary>dst[h][p] = Quest's upper bound of the scores in page p, from the page's per-channel key min/max,
    /// widened for f32 rounding. Index cost: one summary per page.</summary>
    void PageBounds(ScoreSet dst);

    /// <summary>dst[h] = the k positions of largest score, ascending (ties: lowest positions). Scores are per
    /// position (candidates null) or per entry of candidates[h] (row length: its count).</summary>
    void TopK(ScoreSet scores, IndexSet? candidates, Budget budget, IndexSet dst, HeadMask only = default);

    /// <summary>Quest's choice: the max(1, k / pageSize) − 1 pages of largest bound among all but the last page,
    /// plus the last page, as positions below n (every position when k ≥ n or that is all pages).</summary>
    void TopPages(ScoreSet bounds, Budget budget, IndexSet dst);

    /// <summary>StreamingLLM's set: the first min(sinks, k) positions and the most recent k − min(sinks, k)
    /// (every position when k ≥ n). Reads no keys.</summary>
    void Window(int sinks, Budget budget, IndexSet dst);

    /// <summary>Sets state.Refresh to 1 where a refresh is due (else 0) and dst[h] to the ascending, duplicate-free
    /// union of the rule's candidates where it is not (count 0 where it is). Reads no keys.</summary>
    void LfpsCandidates(in LfpsState state, in LfpsRule rule, IndexSet dst);

    /// <summary>Where no refresh is due and drop &gt; 0: sets state.Refresh to 2 if the best candidate score is
    /// below the best score of the last refresh minus `drop`.</summary>
    void LfpsTrigger(ScoreSet candidateScores, IndexSet candidates, in LfpsState state, float drop);

    /// <summary>Where a refresh ran: records the best of allScores[h][0..n), the step and the counters. Then every
    /// head's history moves back one list and `selected` becomes its newest, stamped with this step's position.</summary>
    void LfpsRemember(IndexSet selected, ScoreSet allScores, in LfpsState state);
}
