using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>Quest (Tang et al., 2024): per head, an upper bound of every page's scores from the per-channel key
/// min/max summaries (Σ_j max(q_j·min_j, q_j·max_j)); the pages of largest bound, budget/pageSize of them, the
/// current (last) page always among them, are attended in full. The first layers attend densely.</summary>
public sealed class QuestPlan : SelectionPlan
{
    /// <summary>Cache page size the summaries are kept for (both engines use 16).</summary>
    public const int PageSize = 16;
    private readonly ScoreSet _bounds;
    private readonly IndexSet _selected;

    public QuestPlan(ModelConfig config, Budget budget, int denseLayers, SelectionGranularity granularity, int maxContext = 0)
        : base("quest", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        DenseLayers = denseLayers;
        _bounds = Layout.Scores("bounds", (MaxContext + PageSize - 1) / PageSize);
        // room for every page of a context the budget covers whole, plus the current page
        _selected = Layout.Indices("selected", (MaxKeep + PageSize - 1) / PageSize * PageSize + PageSize);
    }

    public int DenseLayers { get; }
    public override bool ReadsPageSummaries => true;

    public override IndexSet? Layer(ISelectionOps ops, int layer)
    {
        if (layer < DenseLayers) return null;
        ops.PageBounds(_bounds);
        ops.TopPages(_bounds, Budget, _selected);
        return _selected;
    }
}
