using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>Full attention at every layer: the reference every sparse method is measured against.</summary>
public sealed class DensePlan(ModelConfig config, SelectionGranularity granularity, int maxContext = 0)
    : SelectionPlan("dense", config, Budget.OfFraction(1), granularity, maxContext > 0 ? maxContext : config.MaxPositions)
{
    public override IndexSet? Layer(ISelectionOps ops, int layer) => null;
}
