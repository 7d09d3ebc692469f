using SparseDecode.Selection;

namespace SparseDecode.Tests.Selection;

/// <summary>Each method's defining behaviour on synthetic caches: what it selects, what it scores.</summary>
public class SelectorTests
{
    private static readonly Dictionary<string, string> NoParams = [];

    public static TheoryData<string, string> MethodsAndGranularities()
    {
        var d = new TheoryData<string, string>();
        foreach (string m in SelectorSpec.Methods)
            foreach (string g in new[] { "query", "kv" }) d.Add(m, g);
        return d;
    }

    [Theory]
    [MemberData(nameof(MethodsAndGranularities))]
    public void WithBudgetAtLeastTheContextEveryMethodEqualsDenseExactly(string method, string granularity)
    {
        foreach (string budget in new[] { "100%", "5000" })
        {
            using var dense = new SyntheticAttention(layers: 6, heads: 4, kvHeads: 2, headDim: 16, capacity: 400, seed: 11);
            using var sparse = new SyntheticAttention(layers: 6, heads: 4, kvHeads: 2, headDim: 16, capacity: 400, seed: 11);
            dense.FillTo(300);
            sparse.FillTo(300);
            var selector = SelectorSpec.Parse(method, budget, new Dictionary<string, string> { ["granularity"] = granularity }).Host(sparse.Config);
            for (int step = 0; step < 5; step++)
            {
                dense.RandomQueries();
                sparse.RandomQueries();
                var expected = dense.Step(null);
                var actual = sparse.Step(selector);
                for (int l = 0; l < 6; l++)
                    Assert.Equal(expected[l].Output, actual[l].Output); // bitwise
            }
        }
    }

    [Theory]
    [InlineData("query")]
    [InlineData("kv")]
    public void OraclePicksExactlyTheKLargestScores(string granularity)
    {
        using var s = new SyntheticAttention(layers: 2, heads: 4, kvHeads: 2, headDim: 16, capacity: 600, seed: 12);
        s.FillTo(500);
        var selector = SelectorSpec.Parse("oracle", "37", new Dictionary<string, string> { ["granularity"] = granularity }).Host(s.Config);
        for (int step = 0; step < 3; step++)
        {
            s.RandomQueries();
            int n = s.Cache.Length + 1;
            var r = s.Step(selector);
            for (int l = 0; l < 2; l++)
            {
                Assert.False(r[l].Dense);
                for (int h = 0; h < r[l].Indices.Length; h++)
                {
                    // The true scores of the selection head: max over the group's query heads for kv.
                    var heads = (granularity == "query" ? [h] : new[] { 2 * h, 2 * h + 1 }).Select(q => s.NaiveScores(l, q, n)).ToArray();
                    var score = Enumerable.Range(0, n).Select(p => heads.Max(x => x[p])).ToArray();
                    var expected = Enumerable.Range(0, n).OrderByDescending(p => score[p]).Take(37).Order().ToArray();
                    Assert.Equal(expected, r[l].Indices[h]);
                }
                Assert.Equal((long)n * r[l].Indices.Length, r[l].KeysScored);
            }
        }
    }

    [Fact]
    public void StreamingKeepsSinksAndTheMostRecentPositions()
    {
        using var s = new SyntheticAttention(layers: 2, heads: 4, kvHeads: 2, headDim: 8, capacity: 300, seed: 13);
        s.FillTo(200);
        var selector = SelectorSpec.Parse("streaming", "20", new Dictionary<string, string> { ["sinks"] = "3" }).Host(s.Config);
        Assert.Equal(SelectionGranularity.KvHead, selector.Granularity);
        var r = s.Step(selector);
        int[] expected = [0, 1, 2, .. Enumerable.Range(201 - 17, 17)];
        foreach (var layer in r)
        {
            Assert.Equal(0, layer.KeysScored);
            foreach (var idx in layer.Indices) Assert.Equal(expected, idx);
        }
    }

    [Fact]
    public void QuestAttendsThePagesOfLargestBoundAndTheCurrentPage()
    {
        using var s = new SyntheticAttention(layers: 4, heads: 2, kvHeads: 2, headDim: 32, capacity: 700, seed: 14);
        s.FillTo(640);
        s.RandomQueries();
        var selector = SelectorSpec.Parse("quest", "100", NoParams).Host(s.Config);
        Assert.Equal(1, ((QuestPlan)(selector).Plan).DenseLayers); // 2 of 32 layers, scaled to 4 and at least 1
        var r = s.Step(selector);
        Assert.True(r[0].Dense);
        int n = 641, pages = 41;
        s.Backend.Bind(2, s.Queries[2], n);
        var bounds = new float[pages];
        for (int h = 0; h < 2; h++)
        {
            s.Backend.PageUpperBounds(h, SelectionGranularity.QueryHead, bounds);
            var top = Enumerable.Range(0, pages - 1).OrderByDescending(p => bounds[p]).Take(100 / 16 - 1).Append(pages - 1).Order();
            var expected = top.SelectMany(p => Enumerable.Range(p * 16, Math.Min(16, n - p * 16))).ToArray();
            Assert.Equal(expected, r[2].Indices[h]);
            Assert.True(expected.Length <= 100);
        }
        Assert.Equal(2L * pages, r[2].KeysScored); // one page summary per page and head
    }

    [Fact]
    public void TidalScoresAllKeysOnlyInItsSelectionLayersAndReusesThePositions()
    {
        using var s = new SyntheticAttention(layers: 8, heads: 4, kvHeads: 2, headDim: 16, capacity: 500, seed: 15);
        s.FillTo(400);
        var selector = SelectorSpec.Parse("tidal", "50", NoParams).Host(s.Config);
        var tidal = (TidalDecodePlan)(selector).Plan;
        Assert.Equal(1, tidal.Start);     // round(2/32·8)
        Assert.Equal(3, tidal.Reselect);  // round(13/32·8)
        for (int step = 0; step < 3; step++)
        {
            s.RandomQueries();
            int n = s.Cache.Length + 1;
            var r = s.Step(selector);
            for (int l = 0; l < 8; l++)
            {
                bool selecting = l == 1 || l == 3;
                Assert.Equal(selecting ? 4L * n : 0, r[l].KeysScored);
                Assert.Equal(l <= 1 || l == 3, r[l].Dense); // dense below start and in the selection layers
            }
            for (int h = 0; h < 4; h++)
            {
                var s1 = s.NaiveScores(1, h, n);
                var s3 = s.NaiveScores(3, h, n);
                var fromStart = Enumerable.Range(0, n).OrderByDescending(p => s1[p]).Take(50).Order().ToArray();
                var fromReselect = Enumerable.Range(0, n).OrderByDescending(p => s3[p]).Take(50).Order().ToArray();
                Assert.Equal(fromStart, r[2].Indices[h]);
                for (int l = 4; l < 8; l++) Assert.Equal(fromReselect, r[l].Indices[h]);
            }
        }
    }

    [Fact]
    public void TidalLayersScaleWithDepth()
    {
        static (int, int?) Layers(int depth)
        {
            var s = MethodCatalog.Get("tidal").Defaults(depth);
            return (s.Int("start"), s.LayerOrNone("reselect"));
        }
        Assert.Equal((2, (int?)13), Layers(32));
        Assert.Equal((1, (int?)2), Layers(4));
        Assert.Equal((1, (int?)null), Layers(2));
        Assert.Equal((5, (int?)33), Layers(80));
    }

    [Theory]
    [InlineData("query")]
    [InlineData("kv")]
    public void LfpsScoresOnlyItsCandidatesWhichContainThePreviousSelectionShiftedByOne(string granularity)
    {
        using var s = new SyntheticAttention(layers: 2, heads: 4, kvHeads: 2, headDim: 16, capacity: 1200, seed: 16);
        s.FillTo(1000);
        var selector = SelectorSpec.Parse("lfps", "40", new Dictionary<string, string>
        {
            ["granularity"] = granularity, ["interval"] = "0", ["drop"] = "0", ["history"] = "2", ["radius"] = "1",
        }).Host(s.Config);
        var lfps = (LfpsPlan)selector.Plan;
        int heads = granularity == "query" ? 4 : 2;
        s.RandomQueries();
        var first = s.Step(selector);
        Assert.Equal(heads * 1001L, first[0].KeysScored); // first decode step: full refresh
        var previous = first;
        for (int step = 0; step < 4; step++)
        {
            s.RandomQueries();
            int n = s.Cache.Length + 1;
            var r = s.Step(selector);
            // Layer 1 was selected last, so its candidates are the ones on record.
            long candidates = 0;
            for (int h = 0; h < heads; h++)
            {
                var c = selector.Indices(lfps.Candidates, 1, h).ToArray();
                candidates += c.Length;
                var set = c.ToHashSet();
                foreach (int p in previous[1].Indices[h])
                {
                    Assert.Contains(p, set);       // vertical
                    Assert.Contains(p + 1, set);   // slash: shifted by the one step since
                    if (p + 2 < n) Assert.Contains(p + 2, set);   // slash shift widened by the radius
                }
                for (int p = 0; p < 4; p++) Assert.Contains(p, set);              // sinks
                for (int p = n - 16; p < n; p++) Assert.Contains(p, set);         // recent window
                Assert.True(c.Length < n);
                // The selection is the exact top-k among the candidates.
                var exact = (granularity == "query" ? [h] : new[] { 2 * h, 2 * h + 1 }).Select(q => s.NaiveScores(1, q, n)).ToArray();
                var score = Enumerable.Range(0, n).Select(p => exact.Max(x => x[p])).ToArray();
                Assert.Equal(c.OrderByDescending(p => score[p]).Take(40).Order(), r[1].Indices[h]);
            }
            Assert.Equal(candidates, r[1].KeysScored); // index cost: the candidates, nothing else
            previous = r;
        }
        Assert.Equal(2 * heads, selector.Total(lfps.State.Refreshes));
    }

    [Fact]
    public void LfpsRefreshesPeriodicallyAndWhenTheBestCandidateScoreDrops()
    {
        using var s = new SyntheticAttention(layers: 1, heads: 1, kvHeads: 1, headDim: 16, capacity: 800, seed: 17);
        s.FillTo(600, sigma: 0.05f);
        var v = new float[16];
        void Plant(int pos, int channel)
        {
            var k = new float[16];
            k[channel] = 8;
            s.Cache.Write(0, pos, k, v);
        }
        Plant(100, 5);   // what the head attends to first
        Plant(300, 3);   // a needle no history points at
        var selector = SelectorSpec.Parse("lfps", "20", new Dictionary<string, string> { ["interval"] = "4", ["drop"] = "1" })
            .Host(s.Config);
        var state = ((LfpsPlan)selector.Plan).State;
        long Refreshes() => selector.Total(state.Refreshes);
        long Triggered() => selector.Total(state.Triggered);
        SyntheticAttention.LayerResult[] Step(int channel)
        {
            Array.Clear(s.Queries[0]);
            s.Queries[0][channel] = 8;
            var k = new float[16];
            s.RandomFill(k, 0.05f);
            s.Cache.Write(0, s.Cache.Length, k, v);
            return s.Step(selector, write: false);
        }
        Assert.Contains(100, Step(5)[0].Indices[0]);   // first decode step: refresh, best score 16 at 100
        Assert.Equal(1, Refreshes());
        for (int i = 0; i < 3; i++) Assert.Contains(100, Step(5)[0].Indices[0]);
        Assert.Equal(1, Refreshes());
        Step(5);                                      // 4 steps after the first refresh: periodic refresh
        Assert.Equal(2, Refreshes());
        Assert.Equal(0, Triggered());
        // The query turns to channel 3: every candidate now scores about 0, far below the last refresh's best
        // (16), so the trigger refreshes and the full top-k finds the needle.
        var r = Step(3);
        Assert.Equal(1, Triggered());
        Assert.Equal(3, Refreshes());
        Assert.Contains(300, r[0].Indices[0]);
    }
}
