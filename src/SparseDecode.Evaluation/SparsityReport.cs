namespace SparseDecode.Evaluation;

/// <summary>Fidelity and cost of a sparse method, over one layer or all of them, averaged over the decode steps
/// observed. Recalls and error are means over (step, layer, query head); keys and seconds are per step (a layer's
/// row: that layer's share). MeanSelected is keys attended per query head; KeysScoredPerHead divides the keys
/// scored by the query heads (with KV-head selection a key scored once serves the whole group).</summary>
public sealed record SparsityReport(
    int Layer,
    long Steps,
    double MassRecall,
    double TopKRecall,
    double OutputError,
    double MeanSelected,
    double KeysAttendedPerStep,
    double DenseShare,
    double KeysScoredPerStep,
    double KeysScoredPerHead,
    double SelectSecondsPerStep,
    double AttendSecondsPerStep)
{
    /// <summary>Share of the needle positions among the selected keys, mean over (step, head); NaN without needles.</summary>
    public double NeedleRecall { get; init; } = double.NaN;

    /// <summary>Dense attention's mass on the needle positions kept by the selection ÷ its mass on all of them,
    /// summed over (step, head) before dividing; NaN without needles.</summary>
    public double NeedleMassRecall { get; init; } = double.NaN;

    /// <summary>Layer value of the all-layers total.</summary>
    public const int AllLayers = -1;

    /// <summary>Mean dropped mass δ = 1 − attention-mass recall.</summary>
    public double DroppedMass => 1 - MassRecall;
}
