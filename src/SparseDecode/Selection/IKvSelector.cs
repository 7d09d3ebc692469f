namespace SparseDecode.Selection;

/// <summary>A sparse-attention method: at each decode step and layer it chooses the cached positions each head
/// attends to. One instance serves one sequence and keeps that sequence's state (earlier steps' and layers'
/// choices). It computes nothing itself: every score, top-k and bound comes from the backend.</summary>
public interface IKvSelector
{
    string Name { get; }

    SelectionGranularity Granularity { get; }

    /// <summary>Called before the layers of each decode step; `position` is the new token's position.</summary>
    void BeginStep(int position);

    /// <summary>Fills `selection` for backend.Layer (set Dense for full attention).</summary>
    void Select(ISelectionBackend backend, LayerSelection selection);
}
