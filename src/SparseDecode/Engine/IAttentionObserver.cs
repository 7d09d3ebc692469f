namespace SparseDecode.Engine;

/// <summary>What the decode step shows an observer for one query head of one layer: the dense attention
/// probabilities over all positions, the positions the method attended to (empty when it attended densely),
/// and both outputs.</summary>
public readonly ref struct HeadObservation
{
    public required int Layer { get; init; }
    public required int Head { get; init; }
    public required ReadOnlySpan<float> DenseProbabilities { get; init; }
    public required ReadOnlySpan<int> Selected { get; init; }
    public required ReadOnlySpan<float> SparseOutput { get; init; }
    public required ReadOnlySpan<float> DenseOutput { get; init; }
}

/// <summary>Instrumentation of sparse decoding (off unless attached): the engine computes the dense reference
/// only when an observer is attached, so it costs nothing otherwise.</summary>
public interface IAttentionObserver
{
    void OnHead(in HeadObservation observation);

    /// <summary>Per layer and step: keys scored to make the selection, and the time spent selecting and attending.</summary>
    void OnLayer(int layer, int context, long keysScored, bool dense, double selectSeconds, double attendSeconds);
}
