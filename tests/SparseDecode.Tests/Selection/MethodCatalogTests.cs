using SparseDecode.Selection;

namespace SparseDecode.Tests.Selection;

/// <summary>The method table: defaults that depend on the depth or on an earlier parameter, and ceilings by kind.</summary>
public class MethodCatalogTests
{
    private static readonly SparseDecode.Model.ModelConfig Llama32 = SyntheticAttention.ConfigFor(32, 32, 8, 128);

    private static T PlanOf<T>(string method, Dictionary<string, string> parameters) where T : SelectionPlan =>
        (T)SelectorSpec.Parse(method, "256", parameters).CreatePlan(Llama32, 4096);

    [Fact]
    public void EveryMethodBuildsFromItsDefaultsAtEveryDepth()
    {
        foreach (var method in MethodCatalog.All)
            for (int layers = 2; layers <= 80; layers++)
            {
                var config = SyntheticAttention.ConfigFor(layers, 4, 2, 16, 512);
                var plan = SelectorSpec.Parse(method.Name, "5%", new Dictionary<string, string>()).CreatePlan(config, 512);
                Assert.Equal((method.Name, layers, method.DefaultGranularity), (plan.Name, plan.Layers, plan.Granularity));
            }
    }

    [Fact]
    public void TheReselectionLayerDefaultsToAfterAGivenSelectionLayer()
    {
        Assert.Equal((13, (int?)14), Tidal("13"));
        Assert.Equal((20, (int?)21), Tidal("20"));
        Assert.Equal((31, (int?)null), Tidal("31"));
        // below the default selection layer, the scaled default stays
        Assert.Equal((0, (int?)13), Tidal("0"));

        static (int, int?) Tidal(string start)
        {
            var plan = PlanOf<TidalDecodePlan>("tidal", new() { ["start"] = start });
            return (plan.Start, plan.Reselect);
        }
    }

    [Fact]
    public void PrhsFromDefaultsToTheFirstSparseLayerGivenOrScaled()
    {
        Assert.Equal((2, 2), (PlanOf<PrhsPlan>("prhs", []).DenseLayers, PlanOf<PrhsPlan>("prhs", []).From));
        var given = PlanOf<PrhsPlan>("prhs", new() { ["dense"] = "5" });
        Assert.Equal((5, 5), (given.DenseLayers, given.From));
        var both = PlanOf<PrhsPlan>("prhs", new() { ["dense"] = "5", ["from"] = "9" });
        Assert.Equal((5, 9), (both.DenseLayers, both.From));
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 1)]
    [InlineData(16, 1)]
    [InlineData(32, 2)]
    [InlineData(80, 5)]
    public void LeadingDenseLayersAreTwoOf32ScaledAndBelowTheDepth(int layers, int dense) =>
        Assert.Equal(dense, MethodCatalog.Get("quest").Defaults(layers).Int("dense"));

    [Fact]
    public void RealParametersHaveNoModelCeiling()
    {
        // a drop or an exponent is no count of positions: the context does not bound it
        var lfps = PlanOf<LfpsPlan>("lfps", new() { ["drop"] = "100000" });
        Assert.Equal(100000f, lfps.Settings.Drop);
        var prhs = PlanOf<PrhsPlan>("prhs", new() { ["alpha"] = "5000", ["gamma"] = "5000" });
        Assert.Equal((5000d, 5000d), (prhs.Settings.Alpha, prhs.Settings.Gamma));
    }

    [Fact]
    public void ParameterNamesAreUniqueWithinAMethodAndNoneIsGranularity()
    {
        foreach (var method in MethodCatalog.All)
        {
            var names = method.Parameters.Select(p => p.Name).ToArray();
            Assert.Equal(names.Length, names.Distinct().Count());
            Assert.DoesNotContain(MethodCatalog.GranularityName, names);
            Assert.All(names, n => Assert.Equal(n.ToLowerInvariant(), n));
        }
    }
}
