using SparseDecode.Cpu;
using SparseDecode.Engine;

namespace SparseDecode.Evaluation;

/// <summary>Fidelity of a method over the observed decode steps, averaged over steps, layers and heads as the
/// observer defines them; times are per decode step (all layers).</summary>
public readonly record struct FidelityReading(
    double MassRecall,
    double TopKRecall,
    double OutputError,
    double KeysScoredPerStep,
    double KeysAttendedPerStep,
    double SelectSecondsPerStep,
    double AttendSecondsPerStep)
{
    /// <summary>Needle recall and needle-mass recall over all layers (<see cref="SparsityReport.NeedleRecall"/>);
    /// NaN without needles or when not measured.</summary>
    public double NeedleRecall { get; init; } = double.NaN;
    public double NeedleMassRecall { get; init; } = double.NaN;

    /// <summary>The same figures per layer, index = layer (null when not measured).</summary>
    public LayerFidelity[]? Layers { get; init; }

    /// <summary>No step was observed (an engine without an attention observer): every figure NaN.</summary>
    public static FidelityReading NotMeasured => new(double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);
}

/// <summary>One layer's fidelity over the observed steps: the means of <see cref="SparsityReport"/> for that layer
/// (needle figures NaN outside needle tasks).</summary>
public sealed record LayerFidelity(double MassRecall, double TopKRecall, double OutputError, double NeedleRecall, double NeedleMassRecall);

/// <summary>An observer attached to one sequence's decode steps and what it measured at the end.</summary>
public interface IFidelityMeter
{
    IAttentionObserver Observer { get; }

    FidelityReading Read(int steps);
}
