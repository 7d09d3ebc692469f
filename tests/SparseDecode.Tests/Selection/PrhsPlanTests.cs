using SparseDecode.Selection;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Selection;

/// <summary>PrHS and HShare as plans on the CPU executor: the plan against the host policy it replaced (its
/// verification held off by δ* = 1, where it selects what the unverified method does), the new operations against
/// naive f64 math, the budget PrHS keeps, and HShare's sharing seen in the keys it scores.</summary>
public class PrhsPlanTests
{
    /// <summary>Queries that drift around a fixed direction per layer and head, some steps far (a new retrieval),
    /// most near (CIS shares), written to both twins.</summary>
    private static void DriftQueries(Random rng, float[][] bases, float spread, params SyntheticAttention[] twins)
    {
        foreach (var t in twins)
            for (int l = 0; l < bases.Length; l++)
                for (int i = 0; i < bases[l].Length; i++)
                    t.Queries[l][i] = bases[l][i];
        for (int l = 0; l < bases.Length; l++)
            for (int i = 0; i < bases[l].Length; i++)
            {
                float noise = (float)(rng.NextDouble() * 2 - 1) * spread;
                foreach (var t in twins) t.Queries[l][i] += noise;
            }
    }

    [Fact]
    public void KeysAttendedPerStepStayWithinTheBudget()
    {
        using var s = new SyntheticAttention(layers: 6, heads: 4, kvHeads: 2, headDim: 16, capacity: 1300, seed: 43);
        s.FillTo(1000, sigma: 0.3f);
        var selector = SelectorSpec.Parse("prhs", "64", new Dictionary<string, string>()).Host(s.Config);
        var plan = (PrhsPlan)selector.Plan;
        long attended = 0, heads = 0;
        for (int step = 0; step < 20; step++)
        {
            s.RandomQueries();
            var r = s.Step(selector);
            for (int l = plan.DenseLayers; l < 6; l++)
                foreach (var idx in r[l].Indices)
                {
                    Assert.InRange(idx.Length, 1, 64);
                    attended += idx.Length;
                    heads++;
                }
        }
        double mean = (double)attended / heads;
        Assert.InRange(mean, 0.9 * 64, 1.5 * 64);
    }

    [Fact]
    public void ScoreRangeScoresExactlyTheRangeOfEachHead()
    {
        using var s = new SyntheticAttention(layers: 2, heads: 4, kvHeads: 2, headDim: 16, capacity: 400, seed: 44);
        s.FillTo(300);
        s.RandomQueries();
        var plan = (PrhsPlan)SelectorSpec.Parse("prhs", "64", new Dictionary<string, string>()).CreatePlan(s.Config, 400);
        var ops = new SpanPlanOps(plan);
        ops.BeginStep(300);
        s.Backend.Bind(1, s.Queries[1], 301);
        ops.Bind(s.Backend);
        // the domain flags of the plan's state, written by PrhsShare: read them back and score their ranges
        ops.PrhsShare(plan.State, plan.RuleAt(1), plan.Budget);
        ops.ScoreRange(plan.State.DomainStart, plan.State.DomainLength, Domain(plan));
        long expectedCost = 0;
        for (int h = 0; h < 4; h++)
        {
            int start = ops.Flag(plan.State.DomainStart, 1, h), length = ops.Flag(plan.State.DomainLength, 1, h);
            // budget 64: sinks min(4, 8) = 4, local min(32, 16) = 16; no PSAW/ETF at the first sparse layer
            Assert.Equal((0, 4, 301 - 16 - 4), (ops.Flag(plan.State.Decision, 1, h), start, length));
            var naive = s.NaiveScores(1, h, 301);
            var row = ops.Scores(Domain(plan), 1, h);
            for (int j = 0; j < length; j++) Assert.Equal(naive[start + j], row[j], 4);
            expectedCost += length;
        }
        Assert.Equal(expectedCost, s.Backend.KeysScored);
    }

    private static ScoreSet Domain(PrhsPlan plan) =>
        new(plan.Layout.Buffers.Select((b, i) => (b, i)).Single(x => x.b.Name == "domain-scores").i);

    [Fact]
    public void PrhsPickDilatesTheBestAndComposesSinksSalientAndLocal()
    {
        // One needle-strong key at 500: its ±1 neighbours join the salient set however weak they score.
        const int d = 16;
        using var s = new SyntheticAttention(layers: 2, heads: 1, kvHeads: 1, headDim: d, capacity: 1100, seed: 45);
        s.FillTo(1000, sigma: 0.2f);
        var u = new float[d];
        u[0] = 1;
        s.Cache.Write(1, 500, u.Select(x => 12 * x).ToArray(), new float[d]);
        s.Cache.Write(1, 499, u.Select(x => -12 * x).ToArray(), new float[d]);
        var selector = SelectorSpec.Parse("prhs", "64", new Dictionary<string, string> { ["dense"] = "1", ["top"] = "1" }).Host(s.Config);
        s.Queries[1] = u.Select(x => 3 * x).ToArray();
        var r = s.Step(selector);
        var set = r[1].Indices[0];
        Assert.InRange(set.Length, 62, 64);                                     // the fill may repeat dilated positions
        Assert.Equal([0, 1, 2, 3], set[..4]);                                   // sinks
        Assert.Equal(Enumerable.Range(1001 - 16, 16), set[^16..]);               // local window
        Assert.Contains(499, set);                                               // dilation of the best, 500
        var naive = s.NaiveScores(1, 0, 1001);
        var rest = set.Where(p => p >= 4 && p < 1001 - 16 && p != 499 && p != 501).ToArray();
        var unchosen = Enumerable.Range(4, 1001 - 20).Except(set);
        // the fill is the top of the domain: every chosen key scores at least every unchosen one
        Assert.True(rest.Min(p => naive[p]) >= unchosen.Max(p => naive[p]) - 1e-4);
        var salient = selector.Indices(((PrhsPlan)selector.Plan).State.Salient, 1, 0).ToArray();
        Assert.Equal(set.Where(p => p >= 4 && p < 1001 - 16), salient.Where(p => p >= 4 && p < 1001 - 16));
    }

    [Fact]
    public void HShareReusesItsIndicesAcrossStepsAndLayers()
    {
        using var s = new SyntheticAttention(layers: 6, heads: 4, kvHeads: 2, headDim: 16, capacity: 1300, seed: 46);
        s.FillTo(1000);
        var selector = SelectorSpec.Parse("hshare", "96", new Dictionary<string, string>()).Host(s.Config);
        var plan = Assert.IsType<HSharePlan>(selector.Plan);
        Assert.Equal(SelectionGranularity.KvHead, plan.Granularity);
        int[][]?[] previous = new int[6][][];
        for (int step = 0; step < 4; step++)
        {
            s.RandomQueries();
            int n = s.Cache.Length + 1;
            var r = s.Step(selector);
            // budget 96: sinks min(8, 12) = 8, local min(32, 24) = 24; layers 0, 2, 4 select (2 KV heads each)
            // on the first step of every pair of steps, the others score nothing
            long expected = step % 2 == 0 ? 2L * (n - 24 - 8) : 0;
            for (int l = 0; l < 6; l++)
            {
                Assert.Equal(l % 2 == 0 ? expected : 0, r[l].KeysScored);
                Assert.False(r[l].Dense);
                if (l % 2 == 1) Assert.Equal(r[l - 1].Indices, r[l].Indices);   // shared across layers
                for (int h = 0; h < 2; h++)
                {
                    var set = r[l].Indices[h];
                    Assert.Equal(96, set.Length);
                    Assert.Equal(Enumerable.Range(n - 24, 24), set[^24..]);
                    if (step % 2 == 1)                                            // shared across queries
                        Assert.Equal(previous[l]![h].Where(p => p < n - 1 - 24), set.Where(p => p < n - 1 - 24));
                    // f64 attention over the chosen set, for every query head of the group
                    for (int g = 0; g < 2; g++)
                    {
                        int qh = h * 2 + g;
                        var naive = s.NaiveAttend(l, qh, set);
                        for (int i = 0; i < s.D; i++) Assert.Equal(naive[i], r[l].Output[qh * s.D + i], 1e-4);
                    }
                }
                previous[l] = r[l].Indices;
            }
        }
    }

    [Fact]
    public void HShareRetrievesTheTopScoredBetweenSinksAndLocal()
    {
        using var s = new SyntheticAttention(layers: 2, heads: 2, kvHeads: 2, headDim: 16, capacity: 600, seed: 47);
        s.FillTo(500);
        s.RandomQueries();
        var selector = SelectorSpec.Parse("hshare", "64", new Dictionary<string, string> { ["granularity"] = "query" }).Host(s.Config);
        var r = s.Step(selector);
        for (int h = 0; h < 2; h++)
        {
            var set = r[0].Indices[h];
            var naive = s.NaiveScores(0, h, 501);
            // sinks 8, local 16, heavy 40: the 40 best of [8, 485)
            var heavy = Enumerable.Range(8, 501 - 16 - 8).OrderByDescending(p => naive[p]).Take(40).Order();
            Assert.Equal(Enumerable.Range(0, 8).Concat(heavy).Concat(Enumerable.Range(485, 16)), set);
        }
    }
}
