using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>Full attention at every layer: the reference every sparse method is measured against.</summary>
public sealed class DenseSelector(ModelConfig config, SelectionGranularity granularity = SelectionGranularity.QueryHead)
    : SelectorBase("dense", config, Budget.OfFraction(1), granularity)
{
    protected override void SelectLayer(ISelectionBackend backend, LayerSelection selection) => selection.Dense = true;
}
