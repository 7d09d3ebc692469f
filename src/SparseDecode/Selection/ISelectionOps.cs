using SparseDecode.Cpu;
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

/// <summary>PrHS's state. Per layer: each head's salient set (ascending; sinks and local window not included), the
/// step it was retrieved at (0: never) and the query it was retrieved for. Per step, written by PrhsShare for
/// PrhsPick: the decision (0 retrieve, 1 share the stored set, 2 the budget covers the context), the retrieval
/// domain [start, start + length) and the frozen entries [from, from + count) of the previous layer's set.</summary>
public readonly record struct PrhsState(IndexSet Salient, FlagSet RetrievedAt, ScoreSet Reference, FlagSet Decision,
    FlagSet DomainStart, FlagSet DomainLength, FlagSet FrozenFrom, FlagSet FrozenCount);

/// <summary>PrHS's rule at one layer: sinks and local window (capped at k/8 and k/4 of the step's budget k), CIS's
/// sharing (cosine ≥ Tau with the retrieval's query, fewer than Block steps since it), the dilation (±Radius around
/// the Top best), PSAW's pruned share and ETF's frozen share of the context at this layer, and whether the previous
/// layer has sets to freeze from.</summary>
public readonly record struct PrhsRule(int Sinks, int Local, float Tau, int Block, int Radius, int Top, double Prune,
    double Freeze, bool FreezeFromPrevious)
{
    /// <summary>(sinks, local, salient) for a budget of k keys: small budgets keep most of their room for the salient set.</summary>
    public (int Sinks, int Local, int Salient) Split(int k)
    {
        int s = Math.Min(Sinks, k / 8), w = Math.Min(Local, k / 4);
        return (s, w, k - s - w);
    }
}

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

    /// <summary>dst[h][j] = the score of position start[h] + j for j &lt; length[h] (0: nothing). Index cost: the length.</summary>
    void ScoreRange(FlagSet start, FlagSet length, ScoreSet dst);

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

    /// <summary>LFPS's step selection: on the heads where no refresh is due, dst[h] = the top-k of the candidates
    /// (as <see cref="TopK"/>), then, where drop &gt; 0, state.Refresh := 2 if the best candidate score is below the
    /// best score of the last refresh minus `drop` (the trigger). One operation, so that a backend may do both in one
    /// pass over the candidate scores (the GPU's per-row top-k computes the best score beside the selection).</summary>
    void LfpsSelect(ScoreSet candidateScores, IndexSet candidates, Budget budget, IndexSet dst, in LfpsState state, float drop);

    /// <summary>Where a refresh ran: records the best of allScores[h][0..n), the step and the counters. Then every
    /// head's history moves back one list and `selected` becomes its newest, stamped with this step's position.</summary>
    void LfpsRemember(IndexSet selected, ScoreSet allScores, in LfpsState state);

    /// <summary>PrHS's CIS decision and retrieval domain per head, for budget k = budget.Resolve(n): Decision 2 where
    /// k ≥ n (nothing else changes); 1 where the head has a set retrieved fewer than rule.Block steps ago whose query
    /// has cosine ≥ rule.Tau with the current one (domain length 0); else 0: the current query and step are
    /// stamped as the retrieval's, and the domain is [start, n − local) with start = max(sinks, ⌊Prune·n⌋), or, where
    /// ETF's end e = min(⌊Freeze·n⌋, n − local) is above it and the previous layer has a set, start = e and the
    /// previous layer's entries in [max(sinks, ⌊Prune·n⌋), e) — at most the salient room — are frozen. Reads no keys
    /// (one query cosine per head).</summary>
    void PrhsShare(in PrhsState state, in PrhsRule rule, Budget budget);

    /// <summary>Where Decision is 0: the salient set := the frozen entries ∪ the pick from the domain's scores
    /// (domainScores[h][j] is position start + j): the top min(Top, room) dilated by ±Radius within the domain, filled
    /// with the top (room − dilated) — or just the top room where the dilation is empty or fills the room — with
    /// room = salient − frozen. Then on every head dst := [0, sinks) ∪ salient set ∪ [n − local, n), ascending;
    /// every position where Decision is 2.</summary>
    void PrhsPick(ScoreSet domainScores, in PrhsState state, in PrhsRule rule, Budget budget, IndexSet dst);
}
