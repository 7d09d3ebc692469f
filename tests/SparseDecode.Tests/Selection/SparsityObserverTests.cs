using SparseDecode.Engine;
using SparseDecode.Cpu;
using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Selection;

public class SparsityObserverTests
{
    private static void Head(SparsityObserver o, int layer, int head, float[] probs, int[] selected, float[] sparse, float[] dense) =>
        o.OnHead(new HeadObservation
        {
            Layer = layer, Head = head, DenseProbabilities = probs, Selected = selected, SparseOutput = sparse, DenseOutput = dense,
        });

    [Fact]
    public void AccumulatesRecallErrorKeysAndTimePerLayerAndInTotal()
    {
        var o = new SparsityObserver();
        float[] probs = [0.5f, 0.3f, 0.15f, 0.05f];
        // Layer 0: dense for both heads, identical outputs.
        Head(o, 0, 0, probs, [], [1, 2], [1, 2]);
        Head(o, 0, 1, probs, [], [3, 4], [3, 4]);
        o.OnLayer(0, 4, 0, true, 0.001, 0.002);
        // Layer 1, head 0: keeps {0, 2}: mass 0.65; top-2 is {0, 1} → recall 1/2; error ‖(3,4)−(0,0)‖... relative:
        // sparse (1, 2) vs dense (4, 6): ‖(−3, −4)‖ / ‖(4, 6)‖ = 5 / √52.
        Head(o, 1, 0, probs, [0, 2], [1, 2], [4, 6]);
        // Head 1: keeps {0, 1}: mass 0.8, recall 1, no error.
        Head(o, 1, 1, probs, [0, 1], [1, 1], [1, 1]);
        o.OnLayer(1, 4, 10, false, 0.003, 0.004);

        var layers = o.Layers();
        Assert.Equal(2, layers.Count);
        Assert.Equal((1.0, 1.0, 0.0, 4.0, 1.0), (layers[0].MassRecall, layers[0].TopKRecall, layers[0].OutputError, layers[0].MeanSelected, layers[0].DenseShare));
        Assert.Equal((0.65 + 0.8) / 2, layers[1].MassRecall, 6);
        Assert.Equal(0.75, layers[1].TopKRecall, 12);
        Assert.Equal(5 / Math.Sqrt(52) / 2, layers[1].OutputError, 12);
        Assert.Equal(2.0, layers[1].MeanSelected);
        Assert.Equal(10.0, layers[1].KeysScoredPerStep);
        Assert.Equal(5.0, layers[1].KeysScoredPerHead);
        var t = o.Totals();
        Assert.Equal(SparsityReport.AllLayers, t.Layer);
        Assert.Equal(1, t.Steps);
        Assert.Equal((1 + 1 + 0.65 + 0.8) / 4, t.MassRecall, 6);
        Assert.Equal(1 - t.MassRecall, t.DroppedMass, 12);
        Assert.Equal(12.0, t.KeysAttendedPerStep);
        Assert.Equal(0.004, t.SelectSecondsPerStep, 12);
        Assert.Equal(0.006, t.AttendSecondsPerStep, 12);
        Assert.Equal(0.5, t.DenseShare);
        string table = o.RenderTable();
        Assert.Contains("mass-rec", table);
        Assert.All(table.Split('\n'), line => Assert.True(line.Length <= 80, line));
        Assert.DoesNotContain("E-", table);
        Assert.Contains("all ", table);
        Assert.Contains("1 decode steps; dropped mass δ = 0.1375", table);
        Assert.Contains("out-err    ", table); // the columns are explained
    }

    [Fact]
    public void TiesAtTheTopKThresholdCountAsHits()
    {
        var o = new SparsityObserver();
        float[] probs = [0.25f, 0.25f, 0.25f, 0.25f];
        Head(o, 0, 0, probs, [1, 3], [0], [1]);
        Assert.Equal(1.0, o.Totals().TopKRecall);
    }

    [Fact]
    public void NeedleRecallAndNeedleMassPerLayerAgainstAHandComputedReference()
    {
        // needles at positions 1 and 3, and 9 (not yet a key at context 5: it does not count)
        var o = new SparsityObserver([3, 1, 9, 1]);
        float[] probs = [0.4f, 0.1f, 0.2f, 0.25f, 0.05f];
        float[] one = [1];
        // layer 0, head 0 keeps {0, 3}: needle 3 of {1, 3} → recall 1/2, needle mass kept 0.25 of 0.35
        Head(o, 0, 0, probs, [0, 3], one, one);
        // head 1 keeps {0, 2}: no needle → recall 0, kept 0 of 0.35
        Head(o, 0, 1, probs, [0, 2], one, one);
        // layer 1: dense keeps both (1, 0.35 of 0.35); then a head whose needles carry no mass keeps {1}: 1/2, 0.1 of 0.35
        Head(o, 1, 0, probs, [], one, one);
        Head(o, 1, 1, probs, [1], one, one);
        var layers = o.Layers();
        Assert.Equal(0.25, layers[0].NeedleRecall, 12);
        Assert.Equal(0.25 / 0.7, layers[0].NeedleMassRecall, 6);
        Assert.Equal(0.75, layers[1].NeedleRecall, 12);
        Assert.Equal((0.35 + 0.1) / 0.7, layers[1].NeedleMassRecall, 6);
        var t = o.Totals();
        Assert.Equal(0.5, t.NeedleRecall, 12);
        Assert.Equal((0.25 + 0.35 + 0.1) / 1.4, t.NeedleMassRecall, 6);
        // the marks are cleared after each head: a later head keeping nothing of the needles reads 0
        Head(o, 2, 0, probs, [0], one, one);
        Assert.Equal(0.0, o.Layers()[2].NeedleRecall);
    }

    [Fact]
    public void WithoutNeedlesTheNeedleFiguresAreNaN()
    {
        var o = new SparsityObserver();
        Head(o, 0, 0, [0.5f, 0.5f], [0], [1], [1]);
        Assert.True(double.IsNaN(o.Totals().NeedleRecall));
        Assert.True(double.IsNaN(o.Layers()[0].NeedleMassRecall));
    }
}
