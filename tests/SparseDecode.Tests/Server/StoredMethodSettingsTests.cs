using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Protocol;

namespace SparseDecode.Tests.Server;

/// <summary>The server's requests get the settings stored beside the model (sparse_methods.json) unless they name
/// their own: the bundled model's calibrated TidalDecode re-selection layer.</summary>
public class StoredMethodSettingsTests
{
    [Fact]
    public void RequestsUseTheModelsCalibratedSettingsUnlessTheyGiveTheirOwn()
    {
        string dir = Fixtures.BundledModel;
        var config = ModelConfig.Load(dir);
        var stored = MethodDefaults.Load(dir);
        Assert.Equal("5", stored.Apply("tidal", new Dictionary<string, string>())["reselect"]);
        var factory = new PlanFactory(new ServerOptions(), config, config.MaxPositions, stored);
        TidalDecodePlan Tidal(IReadOnlyDictionary<string, string>? p) =>
            (TidalDecodePlan)factory.Create(new SparseRequest("tidal", "5%", p))!;
        Assert.Equal(5, Tidal(null).Reselect);
        Assert.Equal(3, Tidal(new Dictionary<string, string> { ["reselect"] = "3" }).Reselect);
        // without the file: the depth-scaled default of the method
        var plain = new PlanFactory(new ServerOptions(), config, config.MaxPositions);
        Assert.Equal(MethodCatalog.Get("tidal").Defaults(config.NumLayers).LayerOrNone("reselect"),
            ((TidalDecodePlan)plain.Create(new SparseRequest("tidal", "5%", null))!).Reselect);
    }

    [Fact]
    public void RequestsOfOneSettingShareOnePlan()
    {
        var config = ModelConfig.Load(Fixtures.BundledModel);
        var factory = new PlanFactory(new ServerOptions(), config, config.MaxPositions);
        var a = factory.Create(new SparseRequest("lfps", "5%", null));
        Assert.Same(a, factory.Create(new SparseRequest("lfps", "5%", null)));
        Assert.Same(a, factory.Create(new SparseRequest("LFPS", "5%", new Dictionary<string, string>())));
        Assert.NotSame(a, factory.Create(new SparseRequest("lfps", "2%", null)));
        Assert.NotSame(a, factory.Create(new SparseRequest("lfps", "5%", new Dictionary<string, string> { ["sinks"] = "8" })));
        Assert.Null(factory.Create(new SparseRequest("dense", null, null)));
    }
}
