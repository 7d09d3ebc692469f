using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>Exact top-k of the true scores q·k/√d at every layer and step: the quality ceiling of any method that
/// attends to k keys, at the index cost of dense attention (every key scored).</summary>
public sealed class OracleTopKSelector(ModelConfig config, Budget budget, SelectionGranularity granularity = SelectionGranularity.QueryHead)
    : SelectorBase("oracle", config, budget, granularity)
{
    private float[] _scores = new float[1024];

    protected override void SelectLayer(ISelectionBackend backend, LayerSelection selection)
    {
        int n = backend.Context, k = Budget.Resolve(n);
        if (k >= n)
        {
            selection.Dense = true;
            return;
        }
        Ensure(ref _scores, n);
        var scores = _scores.AsSpan(0, n);
        for (int h = 0; h < selection.Heads; h++)
        {
            backend.ScoreAll(h, Granularity, scores);
            selection.SetCount(h, backend.TopK(scores, default, k, selection.Buffer(h)));
        }
    }
}
