using SparseDecode.Engine;

namespace SparseDecode.Evaluation;

/// <summary>The grid's fidelity meter: the sparse-attention observer's all-layer totals and its rows per layer.</summary>
public sealed class SparsityMeter : IFidelityMeter
{
    private readonly SparsityObserver _observer;

    /// <summary>A meter for one sample: a needle task's needle lines are the positions whose recall it measures.</summary>
    public SparsityMeter(TaskSample? sample = null)
    {
        _observer = new SparsityObserver(sample is null ? null : NeedlePositions(sample));
    }

    /// <summary>Prompt positions of every token of every needle line.</summary>
    public static IEnumerable<int> NeedlePositions(TaskSample sample) =>
        sample.NeedleStarts.SelectMany((start, i) => Enumerable.Range(start, sample.NeedleLengths[i]));

    public IAttentionObserver Observer => _observer;

    public FidelityReading Read(int steps)
    {
        var t = _observer.Totals();
        return new FidelityReading(t.MassRecall, t.TopKRecall, t.OutputError, t.KeysScoredPerStep, t.KeysAttendedPerStep,
            t.SelectSecondsPerStep, t.AttendSecondsPerStep)
        {
            NeedleRecall = t.NeedleRecall,
            NeedleMassRecall = t.NeedleMassRecall,
            Layers = _observer.Layers().Select(r => new LayerFidelity(r.MassRecall, r.TopKRecall, r.OutputError, r.NeedleRecall, r.NeedleMassRecall)).ToArray(),
        };
    }
}
