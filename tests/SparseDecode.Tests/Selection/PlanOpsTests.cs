using SparseDecode.Selection;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Selection;

/// <summary>The plan operations on the CPU (the reference the GPU executor is checked against) and the property
/// that lets the GPU capture a plan into one graph: its operations per layer never depend on the data.</summary>
public class PlanOpsTests
{
    /// <summary>Records the operations a plan issues (name and buffers), and nothing else.</summary>
    private sealed class RecordingOps : ISelectionOps
    {
        public readonly List<string> Calls = [];
        public int Layer { get; set; }
        public void ScoreAll(ScoreSet dst, HeadMask only = default) => Calls.Add($"{Layer} all {dst.Id} {only}");
        public void ScoreList(IndexSet list, ScoreSet dst) => Calls.Add($"{Layer} list {list.Id} {dst.Id}");
        public void PageBounds(ScoreSet dst) => Calls.Add($"{Layer} bounds {dst.Id}");
        public void TopK(ScoreSet scores, IndexSet? candidates, Budget budget, IndexSet dst, HeadMask only = default) =>
            Calls.Add($"{Layer} topk {scores.Id} {candidates?.Id} {budget} {dst.Id} {only}");
        public void TopPages(ScoreSet bounds, Budget budget, IndexSet dst) => Calls.Add($"{Layer} pages {bounds.Id} {budget} {dst.Id}");
        public void Window(int sinks, Budget budget, IndexSet dst) => Calls.Add($"{Layer} window {sinks} {budget} {dst.Id}");
        public void LfpsCandidates(in LfpsState state, in LfpsRule rule, IndexSet dst) => Calls.Add($"{Layer} lfps-candidates {rule} {dst.Id}");
        public void LfpsSelect(ScoreSet candidateScores, IndexSet candidates, Budget budget, IndexSet dst, in LfpsState state, float drop) =>
            Calls.Add($"{Layer} lfps-select {candidateScores.Id} {candidates.Id} {budget} {dst.Id} {drop}");
        public void LfpsRemember(IndexSet selected, ScoreSet allScores, in LfpsState state) => Calls.Add($"{Layer} lfps-remember {selected.Id}");
        public void ScoreRange(FlagSet start, FlagSet length, ScoreSet dst) => Calls.Add($"{Layer} range {start.Id} {length.Id} {dst.Id}");
        public void PrhsShare(in PrhsState state, in PrhsRule rule, Budget budget) => Calls.Add($"{Layer} prhs-share {rule} {budget}");
        public void PrhsPick(ScoreSet domainScores, in PrhsState state, in PrhsRule rule, Budget budget, IndexSet dst) =>
            Calls.Add($"{Layer} prhs-pick {domainScores.Id} {rule} {budget} {dst.Id}");
    }

    [Theory]
    [MemberData(nameof(SelectorTests.MethodsAndGranularities), MemberType = typeof(SelectorTests))]
    public void EveryPlanIssuesTheSameOperationsEveryStep(string method, string granularity)
    {
        using var s = new SyntheticAttention(layers: 6, heads: 4, kvHeads: 2, headDim: 16, capacity: 400, seed: 21);
        var spec = SelectorSpec.Parse(method, "5%", new Dictionary<string, string> { ["granularity"] = granularity });
        var plan = spec.CreatePlan(s.Config, 400)!;
        s.FillTo(300);
        var selector = new SpanPlanOps(plan);
        List<string>? first = null;
        for (int step = 0; step < 4; step++)
        {
            // run the real step (state changes, data differs) and record what the plan asks for at each layer
            s.RandomQueries();
            s.Step(selector);
            var rec = new RecordingOps();
            for (int l = 0; l < plan.Layers; l++)
            {
                rec.Layer = l;
                var attended = plan.Layer(rec, l);
                rec.Calls.Add($"{l} attends {attended?.Id}");
            }
            first ??= rec.Calls;
            Assert.Equal(first, rec.Calls);
        }
    }

    [Fact]
    public void WindowKeepsSinksAndRecentAndEverythingWhenTheBudgetCoversTheContext()
    {
        using var s = new SyntheticAttention(layers: 1, heads: 2, kvHeads: 2, headDim: 8, capacity: 100, seed: 22);
        s.FillTo(40);
        var plan = new StreamingLlmPlan(s.Config, Budget.OfTokens(10), sinks: 3, SelectionGranularity.KvHead, maxContext: 100);
        var ops = new SpanPlanOps(plan);
        ops.BeginStep(40);
        s.Backend.Bind(0, s.Queries[0], 41);
        ops.Bind(s.Backend);
        var set = plan.Layer(ops, 0)!.Value;
        Assert.Equal([0, 1, 2, 34, 35, 36, 37, 38, 39, 40], ops.Indices(set, 0, 1).ToArray());
        var all = new StreamingLlmPlan(s.Config, Budget.OfTokens(100), sinks: 3, SelectionGranularity.KvHead, maxContext: 100);
        var ops2 = new SpanPlanOps(all);
        ops2.Bind(s.Backend);
        var whole = all.Layer(ops2, 0)!.Value;
        Assert.Equal(Enumerable.Range(0, 41), ops2.Indices(whole, 0, 0).ToArray());
    }

    /// <summary>A plan of two masked top-k's over one score row: the heads a flag admits take the first, the others
    /// the second; a head is never written by an operation its mask excludes.</summary>
    private sealed class MaskedPlan : SelectionPlan
    {
        public readonly ScoreSet Scores;
        public readonly IndexSet Big, Small;
        public readonly FlagSet Flag;

        public MaskedPlan(SparseDecode.Model.ModelConfig c) : base("masked", c, Budget.OfTokens(8), SelectionGranularity.QueryHead, 200)
        {
            Scores = Layout.Scores("scores", 200);
            Big = Layout.Indices("big", 8);
            Small = Layout.Indices("small", 8);
            Flag = Layout.Flags("flag");
        }

        public override IndexSet? Layer(ISelectionOps ops, int layer)
        {
            ops.ScoreAll(Scores, HeadMask.Where(Flag));
            ops.TopK(Scores, null, Budget.OfTokens(8), Big, HeadMask.Where(Flag));
            ops.TopK(Scores, null, Budget.OfTokens(2), Small, HeadMask.WhereNot(Flag));
            return Big;
        }
    }

    [Fact]
    public void MaskedOperationsActOnlyOnTheHeadsTheirFlagAdmits()
    {
        using var s = new SyntheticAttention(layers: 1, heads: 4, kvHeads: 2, headDim: 16, capacity: 200, seed: 23);
        s.FillTo(150);
        s.RandomQueries();
        var plan = new MaskedPlan(s.Config);
        var ops = new SpanPlanOps(plan);
        s.Backend.Bind(0, s.Queries[0], 151);
        ops.Bind(s.Backend);
        // no flag set: nothing is scored and only the WhereNot top-k runs, over rows never written (zeros: ties,
        // so the lowest positions)
        plan.Layer(ops, 0);
        for (int h = 0; h < 4; h++)
        {
            Assert.Empty(ops.Indices(plan.Big, 0, h).ToArray());
            Assert.Equal([0, 1], ops.Indices(plan.Small, 0, h).ToArray());
        }
        Assert.Equal(0, s.Backend.KeysScored);
    }
}
