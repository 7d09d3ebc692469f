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
    /// <summary>No step was observed (an engine without an attention observer): every figure NaN.</summary>
    public static FidelityReading NotMeasured => new(double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);
}

/// <summary>An observer attached to one sequence's decode steps and what it measured at the end.</summary>
public interface IFidelityMeter
{
    IAttentionObserver Observer { get; }

    FidelityReading Read(int steps);
}
