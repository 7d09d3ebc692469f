using SparseDecode.Engine;

namespace SparseDecode.Evaluation;

/// <summary>The grid's fidelity meter: the sparse-attention observer's all-layer totals.</summary>
public sealed class SparsityMeter : IFidelityMeter
{
    private readonly SparsityObserver _observer = new();

    public IAttentionObserver Observer => _observer;

    public FidelityReading Read(int steps)
    {
        var t = _observer.Totals();
        return new FidelityReading(t.MassRecall, t.TopKRecall, t.OutputError, t.KeysScoredPerStep, t.KeysAttendedPerStep,
            t.SelectSecondsPerStep, t.AttendSecondsPerStep);
    }
}
