using SparseDecode.Model;
using SparseDecode.Cpu;

namespace SparseDecode.Selection;

/// <summary>Exact top-k of the true scores q·k/√d at every layer and step: the quality ceiling of any method that
/// attends to k keys, at the index cost of dense attention (every key scored).</summary>
public sealed class OracleTopKPlan : SelectionPlan
{
    private readonly ScoreSet _scores;
    private readonly IndexSet _selected;

    public OracleTopKPlan(ModelConfig config, Budget budget, SelectionGranularity granularity, int maxContext = 0)
        : base("oracle", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        _scores = Layout.Scores("scores", MaxContext);
        _selected = Layout.Indices("selected", MaxKeep);
    }

    public override IndexSet? Layer(ISelectionOps ops, int layer)
    {
        ops.ScoreAll(_scores);
        ops.TopK(_scores, null, Budget, _selected);
        return _selected;
    }
}
