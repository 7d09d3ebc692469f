using SparseDecode.Selection;

namespace SparseDecode.Tests.Selection;

/// <summary>PrHS's pre-hoc selection on synthetic attention: the budget binds whatever the attention looks like,
/// and PSAW and ETF narrow and freeze retrieval with depth as the paper's schedules say.</summary>
public class PrhsTests
{
    /// <summary>The paper's PrHS: selection before scoring, nothing verified after, so its budget binds — even on
    /// flat attention, whose mass no budget covers.</summary>
    [Fact]
    public void TheBudgetBindsEvenOnFlatAttention()
    {
        using var s = new SyntheticAttention(layers: 4, heads: 4, kvHeads: 2, headDim: 16, capacity: 1100, seed: 31);
        s.FillTo(1000, sigma: 0.01f);
        var selector = SelectorSpec.Parse("prhs", "64", new Dictionary<string, string>()).Host(s.Config);
        var plan = Assert.IsType<PrhsPlan>(selector.Plan);
        for (int step = 0; step < 3; step++)
        {
            s.RandomQueries();
            var r = s.Step(selector);
            for (int l = plan.DenseLayers; l < 4; l++)
            {
                Assert.False(r[l].Dense);
                Assert.All(r[l].Indices, idx => Assert.InRange(idx.Length, 1, 64));
            }
        }
    }

    [Fact]
    public void PsawNarrowsAndEtfFreezesRetrievalWithDepth()
    {
        using var s = new SyntheticAttention(layers: 8, heads: 2, kvHeads: 2, headDim: 16, capacity: 2100, seed: 26);
        s.FillTo(2000);
        s.RandomQueries();
        var selector = SelectorSpec.Parse("prhs", "200", new Dictionary<string, string> { ["from"] = "1", ["dense"] = "1" }).Host(s.Config);
        var plan = (PrhsPlan)selector.Plan;
        int n = 2001;
        for (int l = 1; l < 8; l++)
        {
            Assert.Equal((int)Math.Floor((1 - Math.Pow(0.8, (l - 1) / 7.0)) * n), plan.PrunedPrefix(l, n));
            Assert.Equal((int)Math.Floor((1 - Math.Pow(0.4, (l - 1) / 7.0)) * n), plan.FrozenPrefix(l, n));
        }
        var r = s.Step(selector);
        for (int l = 2; l < 8; l++)
        {
            int pruned = plan.PrunedPrefix(l, n), frozen = plan.FrozenPrefix(l, n);
            Assert.True(frozen > pruned);
            // Retrieval scores only [frozen, n − local): the newest part of the context.
            Assert.Equal(2L * (n - 32 - frozen), r[l].KeysScored);
            for (int h = 0; h < 2; h++)
            {
                var mine = r[l].Indices[h];
                Assert.DoesNotContain(mine, p => p >= 4 && p < pruned);                 // PSAW: pruned
                var inherited = r[l - 1].Indices[h].Where(p => p >= pruned && p < frozen);
                Assert.Equal(inherited, mine.Where(p => p >= pruned && p < frozen));    // ETF: frozen from layer l − 1
            }
        }
    }
}
