using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>Quest (Tang et al., 2024): per head, an upper bound of every page's scores from the per-channel key
/// min/max summaries (Σ_j max(q_j·min_j, q_j·max_j)); the pages of largest bound, budget/pageSize of them, the
/// current (last) page always among them, are attended in full. The first layers attend densely.</summary>
public sealed class QuestSelector(ModelConfig config, Budget budget, int denseLayers, SelectionGranularity granularity = SelectionGranularity.QueryHead)
    : SelectorBase("quest", config, budget, granularity)
{
    private float[] _bounds = new float[256];
    private int[] _pages = new int[256];

    public int DenseLayers { get; } = denseLayers;

    protected override void SelectLayer(ISelectionBackend backend, LayerSelection selection)
    {
        int n = backend.Context, k = Budget.Resolve(n), ps = backend.PageSize;
        int pages = (n + ps - 1) / ps, chosen = Math.Max(1, k / ps);
        if (backend.Layer < DenseLayers || k >= n || chosen >= pages)
        {
            selection.Dense = true;
            return;
        }
        Ensure(ref _bounds, pages);
        Ensure(ref _pages, pages);
        for (int h = 0; h < selection.Heads; h++)
        {
            backend.PageUpperBounds(h, Granularity, _bounds.AsSpan(0, pages));
            // The last page holds the current token and the newest keys: always attended, as in Quest.
            int m = backend.TopK(_bounds.AsSpan(0, pages - 1), default, chosen - 1, _pages);
            _pages[m++] = pages - 1;
            var b = selection.Buffer(h);
            int count = 0;
            for (int i = 0; i < m; i++)
                for (int pos = _pages[i] * ps, end = Math.Min(n, pos + ps); pos < end; pos++) b[count++] = pos;
            selection.SetCount(h, count);
        }
    }
}
