using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Selection;
using SparseDecode.Tokenization;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Evaluation;

/// <summary>Model-dependent settings chosen on calibration prompts only, stored beside the model, used by default.</summary>
public class CalibrationTests
{
    [Fact]
    public void CalibrationPromptsNeverShareASeedWithTheEvaluation()
    {
        var grid = new EvalGrid { Methods = ["tidal"], Budgets = ["2%"], Contexts = [8192], Tasks = [.. Calibration.Tasks], Samples = 64 };
        foreach (string task in Calibration.Tasks)
            foreach (int context in new[] { 1024, 2048, 4096, 8192 })
            {
                var eval = Enumerable.Range(0, 64).Select(i => grid.SampleSeed(task, context, i)).ToHashSet();
                for (int i = 0; i < 64; i++)
                    Assert.DoesNotContain(RandomExtensions.StableSeed(Calibration.SeedBase, task, context, i), eval);
            }
    }

    /// <summary>The bundled model and a prompt builder over its held-out text.</summary>
    private static (Transformer Model, PromptBuilder Builder) Bundled()
    {
        string dir = Fixtures.BundledModel;
        var model = Transformer.Load(dir);
        var tok = new ModelTaskTokenizer(Tokenizer.FromDirectory(dir), model.Config);
        return (model, new PromptBuilder(HeldoutCorpus.Load(HeldoutCorpus.Find(dir)!, tok), tok));
    }

    [Fact]
    public void TidalSweepChoosesTheLayerOfHighestAnswerLikelihoodOverEveryCandidate()
    {
        var (model, builder) = Bundled();
        using var _ = model;
        var r = Calibration.Sweep(new CpuEngine(model), builder, "tidal", 768, 2, "5%");
        int start = MethodCatalog.Get("tidal").Defaults(model.Config.NumLayers).Int("start");
        Assert.Equal(Enumerable.Range(start + 1, model.Config.NumLayers - start - 1).Select(l => l.ToString()).Append("none"),
            r.Candidates.Select(c => c.Value));
        Assert.All(r.Candidates, c => Assert.InRange(c.MassRecall, 0.0, 1.0 + 1e-9));
        Assert.All(r.Candidates, c => Assert.True(c.AnswerLogProb <= 0 && double.IsFinite(c.AnswerLogProb)));
        Assert.Equal(r.Candidates.Max(c => c.AnswerLogProb), r.Candidates.Single(c => c.Value == r.Chosen).AnswerLogProb);
        // the candidates differ: a sweep that measured nothing would tie everywhere
        Assert.True(r.Candidates.Select(c => c.AnswerLogProb).Distinct().Count() > 1);
    }

    [Fact]
    public void LfpsSweepsHistoryAndRadiusTogetherUnderAnIndexCostCap()
    {
        var config = SparseDecode.Tests.Selection.SyntheticAttention.ConfigFor(8, 4, 2, 16);
        var (parameter, values) = Calibration.Candidates("lfps", config);
        Assert.Equal("history,radius", parameter);
        Assert.All(values, v => SelectorSpec.Parse("lfps", "2%", Calibration.SettingsOf(parameter, v)));
        Assert.Equal(new Dictionary<string, string> { ["history"] = "1", ["radius"] = "0" }, Calibration.SettingsOf(parameter, "1;0"));
        Assert.Equal(0.12, Calibration.MaxScoredShare("lfps"));
        Assert.Null(Calibration.MaxScoredShare("tidal"));
        Assert.ThrowsAny<ArgumentException>(() => Calibration.SettingsOf(parameter, "1"));
    }

    /// <summary>calibrate --speculate's sweep: every (method, K) candidate's speculative output is dense decoding's on
    /// every prompt, its acceptance is its own (the candidates differ), and the choice is the fastest of them.</summary>
    [Fact]
    public void DraftSweepMeasuresAcceptanceAndChoosesTheFastestLosslessDraft()
    {
        var (model, builder) = Bundled();
        using var _ = model;
        var stored = MethodDefaults.Load(Fixtures.BundledModel);
        var r = Calibration.SweepDrafts(new CpuEngine(model), builder, ["tidal", "quest"], [2, 4], 768, 2, "2%", 16,
            m => stored.Apply(m, new Dictionary<string, string>()));
        Assert.Equal(["tidal,2", "tidal,4", "quest,2", "quest,4"], r.Candidates.Select(x => $"{x.Method},{x.Draft}"));
        Assert.All(r.Candidates, x => Assert.True(x.Lossless, $"{x.Method} K={x.Draft}: {x.Identical}/{x.Prompts} identical to dense"));
        Assert.All(r.Candidates, x => Assert.InRange(x.MeanAccepted, 0, x.Draft));
        Assert.All(r.Candidates, x => Assert.True(x.Passes > 0 && x.Accepted <= x.Drafted && x.Seconds > 0));
        Assert.True(r.Candidates.Select(x => x.AcceptanceRate).Distinct().Count() > 1, "the drafts' acceptances are their own");
        Assert.Equal(r.Candidates.Max(x => x.TokensPerSecond), r.Chosen.TokensPerSecond);
        Assert.Equal(new MethodDefaults.Draft(r.Chosen.Method, "2%", r.Chosen.Draft.ToString()), r.Choice);
        Assert.True(r.DenseTokensPerSecond > 0);
        Assert.Throws<ArgumentException>(() => Calibration.SweepDrafts(new CpuEngine(model), builder, ["tidal"], [2], 768, 1, "2%", EvalGrid.Reserve,
            m => stored.Apply(m, new Dictionary<string, string>())));
    }

    /// <summary>The stored draft: written beside the settings without disturbing them, read back, and a bad one
    /// refused with one sentence naming the file.</summary>
    [Fact]
    public void TheStoredDraftRoundTripsBesideTheMethodsSettings()
    {
        using var tmp = new Fixtures.TempDir();
        Assert.Null(MethodDefaults.Load(tmp.Path).Speculation);
        MethodDefaults.Save(tmp.Path, "tidal", new Dictionary<string, string> { ["reselect"] = "5" }, new() { ["chosen"] = "5" });
        MethodDefaults.SaveSpeculation(tmp.Path, new MethodDefaults.Draft("lfps", "2%", "4"), new() { ["chosen"] = "lfps,4" });
        var stored = MethodDefaults.Load(tmp.Path);
        Assert.Equal(new MethodDefaults.Draft("lfps", "2%", "4"), stored.Speculation);
        Assert.Equal(["tidal.reselect=5"], stored.Scoped().Select(p => $"{p.Key}={p.Value}"));
        Assert.Contains("\"speculation\"", File.ReadAllText(tmp.File(MethodDefaults.FileName)));
        foreach (string bad in new[] { """{"speculation": {"method": "dense", "budget": "2%", "draft": "4"}}""",
                     """{"speculation": {"method": "tidal", "budget": "2%", "draft": "40"}}""", """{"speculation": {"method": "tidal"}}""" })
        {
            File.WriteAllText(tmp.File(MethodDefaults.FileName), bad);
            var e = Assert.ThrowsAny<ArgumentException>(() => MethodDefaults.Load(tmp.Path));
            Assert.StartsWith(tmp.File(MethodDefaults.FileName) + ": 'speculation'", e.Message);
        }
    }

    [Fact]
    public void StoredSettingsAreTheDefaultsAndAnExplicitParameterWins()
    {
        string dir = Directory.CreateTempSubdirectory("methods").FullName;
        try
        {
            Assert.Empty(MethodDefaults.Load(dir).Apply("tidal", new Dictionary<string, string>()));
            MethodDefaults.Save(dir, "tidal", new Dictionary<string, string> { ["reselect"] = "5" }, new() { ["chosen"] = "5" });
            var stored = MethodDefaults.Load(dir);
            var config = SparseDecode.Tests.Selection.SyntheticAttention.ConfigFor(8, 4, 2, 16);
            TidalDecodePlan Plan(IReadOnlyDictionary<string, string> p) =>
                (TidalDecodePlan)SelectorSpec.Parse("tidal", "5%", stored.Apply("tidal", p)).CreatePlan(config, 1024)!;
            Assert.Equal(5, Plan(new Dictionary<string, string>()).Reselect);
            Assert.Equal(3, Plan(new Dictionary<string, string> { ["reselect"] = "3" }).Reselect);
            Assert.Empty(stored.Apply("lfps", new Dictionary<string, string>()));
            Assert.Equal([new KeyValuePair<string, string>("tidal.reselect", "5")], stored.Scoped());
            // a second setting of another method, then a second of the same: nothing stored before is lost
            MethodDefaults.Save(dir, "prhs", new Dictionary<string, string> { ["psi"] = "0.8" }, new() { ["chosen"] = "0.8" });
            MethodDefaults.Save(dir, "prhs", new Dictionary<string, string> { ["phi"] = "1" }, new() { ["chosen"] = "1" });
            var both = MethodDefaults.Load(dir);
            Assert.Equal(["prhs.phi=1", "prhs.psi=0.8", "tidal.reselect=5"], both.Scoped().Select(p => $"{p.Key}={p.Value}").Order());
            File.WriteAllText(Path.Combine(dir, MethodDefaults.FileName), """{"tidal": {"reselect": "x"}}""");
            var e = Assert.ThrowsAny<ArgumentException>(() => MethodDefaults.Load(dir));
            Assert.Contains(MethodDefaults.FileName, e.Message);
            Assert.Contains("reselect", e.Message);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
