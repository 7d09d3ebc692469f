using SparseDecode.Selection;

namespace SparseDecode.Tests.Selection;

public class SelectorSpecTests
{
    private static readonly SparseDecode.Model.ModelConfig Llama32 = SyntheticAttention.ConfigFor(32, 32, 8, 128);

    [Fact]
    public void MethodsAreTheEightInOrder() =>
        Assert.Equal(["dense", "oracle", "streaming", "quest", "tidal", "lfps", "prhs", "hshare"], SelectorSpec.Methods);

    [Theory]
    [InlineData("dense", typeof(DensePlan), SelectionGranularity.QueryHead)]
    [InlineData("oracle", typeof(OracleTopKPlan), SelectionGranularity.QueryHead)]
    [InlineData("streaming", typeof(StreamingLlmPlan), SelectionGranularity.KvHead)]
    [InlineData("quest", typeof(QuestPlan), SelectionGranularity.QueryHead)]
    [InlineData("tidal", typeof(TidalDecodePlan), SelectionGranularity.QueryHead)]
    [InlineData("LFPS", typeof(LfpsPlan), SelectionGranularity.QueryHead)]
    [InlineData(" prhs ", typeof(PrhsPlan), SelectionGranularity.QueryHead)]
    [InlineData("hshare", typeof(HSharePlan), SelectionGranularity.KvHead)]
    public void CreatesEachMethodWithItsPaperGranularity(string method, Type type, SelectionGranularity g)
    {
        var spec = SelectorSpec.Parse(method, "256", new Dictionary<string, string>());
        var selector = spec.Host(Llama32);
        Assert.IsType(type, selector.Plan);
        Assert.Equal(g, selector.Granularity);
        Assert.Equal(method.Trim().ToLowerInvariant(), selector.Name);
        var kv = SelectorSpec.Parse(method, "3%", new Dictionary<string, string> { ["granularity"] = "kv" }).Host(Llama32);
        Assert.Equal(SelectionGranularity.KvHead, kv.Granularity);
    }

    private static T PlanOf<T>(string method, Dictionary<string, string> parameters) where T : SelectionPlan =>
        (T)SelectorSpec.Parse(method, "256", parameters).CreatePlan(Llama32, 4096);

    [Fact]
    public void DefaultsFollowThePapersScaledToDepth()
    {
        var tidal = PlanOf<TidalDecodePlan>("tidal", []);
        Assert.Equal((2, (int?)13), (tidal.Start, tidal.Reselect));
        var quest = PlanOf<QuestPlan>("quest", []);
        Assert.Equal(2, quest.DenseLayers);
        var prhs = PlanOf<PrhsPlan>("prhs", []);
        Assert.Equal((2, 2, 16, 0.8f), (prhs.DenseLayers, prhs.From, prhs.Settings.Block, prhs.Settings.Tau));
        var hshare = PlanOf<HSharePlan>("hshare", []);
        Assert.Equal((8, 32, 2, 2, 0), (hshare.Settings.Sinks, hshare.Settings.Local, hshare.Settings.QueryShare, hshare.Settings.LayerShare, hshare.Settings.DenseLayers));
        var lfps = PlanOf<LfpsPlan>("lfps", []);
        Assert.Equal((2, 1, 4, 16, 32, 2f), (lfps.Settings.History, lfps.Settings.Radius, lfps.Settings.Sinks, lfps.Settings.Recent, lfps.Settings.Interval, lfps.Settings.Drop));
        var none = PlanOf<TidalDecodePlan>("tidal", new() { ["start"] = "4", ["reselect"] = "none" });
        Assert.Equal((4, (int?)null), (none.Start, none.Reselect));
        var spec = SelectorSpec.Parse("lfps", "3%", new Dictionary<string, string> { ["Radius"] = "4", ["granularity"] = "kv" });
        Assert.Equal("lfps budget=3% granularity=kv radius=4", spec.ToString());
        Assert.Equal(Budget.OfFraction(0.03), spec.Budget);
    }

    [Theory]
    [InlineData("magic", "256", "", "Unknown method 'magic'; choose one of dense, oracle, streaming, quest, tidal, lfps, prhs, hshare.")]
    [InlineData("lfps", "256", "window=4", "Method 'lfps' has no parameter 'window'; its parameters are history, radius, sinks, recent, interval, drop, dense, granularity.")]
    [InlineData("lfps", "256", "radius=-1", "Parameter 'radius' of method 'lfps' must be an integer ≥ 0, got '-1'.")]
    [InlineData("prhs", "256", "tau=1.5", "Parameter 'tau' of method 'prhs' must be a number in [-1, 1], got '1.5'.")]
    [InlineData("prhs", "256", "verify=bound", "Method 'prhs' has no parameter 'verify'; its parameters are sinks, local, tau, block, radius, top, dense, from, phi, alpha, psi, gamma, granularity.")]
    [InlineData("oracle", "256", "granularity=group", "Parameter 'granularity' of method 'oracle' must be 'query' or 'kv', got 'group'.")]
    [InlineData("tidal", "256", "reselect=x", "Parameter 'reselect' of method 'tidal' must be a layer number ≥ 0 or 'none', got 'x'.")]
    [InlineData("dense", "lots", "", "Budget 'lots' is neither a positive number of tokens nor a percentage like 3%.")]
    [InlineData("dense", "0%", "", "Budget '0%' is not a percentage in (0, 100].")]
    public void RefusesBadInputWithOneClearSentence(string method, string budget, string param, string message)
    {
        var p = new Dictionary<string, string>();
        if (param.Length > 0) p[param[..param.IndexOf('=')]] = param[(param.IndexOf('=') + 1)..];
        var e = Assert.Throws<SelectorSpec.SpecException>(() => SelectorSpec.Parse(method, budget, p));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void LayerParametersBeyondTheModelAreRefusedAtCreation()
    {
        var spec = SelectorSpec.Parse("tidal", "256", new Dictionary<string, string> { ["start"] = "40" });
        var e = Assert.Throws<SelectorSpec.SpecException>(() => spec.Host(Llama32));
        Assert.Equal("Parameter 'start' of method 'tidal' must be at most 32 (the model has 32 layers), got 40.", e.Message);
        Assert.Equal("params.start", e.Field);
        var q = SelectorSpec.Parse("quest", "256", new Dictionary<string, string> { ["dense"] = "33" });
        Assert.Equal("Parameter 'dense' of method 'quest' must be at most 32 (the model has 32 layers), got 33.",
            Assert.Throws<SelectorSpec.SpecException>(() => q.Host(Llama32)).Message);
    }

    // Each of these once allocated per-sequence state in proportion to the value (history 100000: 1 GB; 2^31−1:
    // "Array dimensions exceeded"); now they are refused before the selector exists.
    [Theory]
    [InlineData("lfps", "history", "100000", "must be at most 64")]
    [InlineData("lfps", "history", "2147483647", "must be at most 64")]
    [InlineData("lfps", "radius", "1000000", "must be at most 64")]
    [InlineData("prhs", "radius", "65", "must be at most 64")]
    [InlineData("prhs", "top", "2147483647", "the model's context is")]
    [InlineData("prhs", "block", "100000000", "the model's context is")]
    [InlineData("lfps", "recent", "100000000", "the model's context is")]
    [InlineData("streaming", "sinks", "2147483647", "the model's context is")]
    [InlineData("prhs", "from", "99", "32 layers")]
    [InlineData("tidal", "reselect", "32", "must be at most 31 (the model's layers are 0 to 31)")]
    public void ParametersBeyondTheModelAreRefusedBeforeAllocation(string method, string name, string value, string reason)
    {
        var spec = SelectorSpec.Parse(method, "256", new Dictionary<string, string> { [name] = value });
        var e = Assert.Throws<SelectorSpec.SpecException>(() => spec.Host(Llama32));
        Assert.Contains(reason, e.Message);
        Assert.Equal("params." + name, e.Field);
    }

    [Fact]
    public void TheCeilingsThemselvesAreAccepted()
    {
        var at = new Dictionary<string, string> { ["history"] = "64", ["radius"] = "64", ["recent"] = "4096", ["dense"] = "32" };
        Assert.IsType<LfpsPlan>((SelectorSpec.Parse("lfps", "256", at).Host(Llama32)).Plan);
    }

    [Fact]
    public void NonFiniteBudgetsAreRefused()
    {
        foreach (string budget in new[] { "NaN%", "nan%", "-NaN%", "Infinity%" })
        {
            var e = Assert.Throws<SelectorSpec.SpecException>(() => SelectorSpec.Parse("quest", budget, new Dictionary<string, string>()));
            Assert.Equal("budget", e.Field);
            Assert.Contains("percentage", e.Message);
        }
    }

    [Fact]
    public void DescribeListsEveryMethodAndParameter()
    {
        string text = SelectorSpec.Describe();
        foreach (string m in SelectorSpec.Methods) Assert.Contains($"\n{m}: ", "\n" + text);
        foreach (string p in new[] { "history", "radius", "interval", "drop", "tau", "block", "phi", "psi", "reselect", "sinks", "granularity" })
            Assert.Contains(p, text);
        Assert.Contains("(default 0.8)", text);
    }
}
