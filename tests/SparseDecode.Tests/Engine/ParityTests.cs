using SparseDecode.Engine;
using SparseDecode.Model;
using Xunit.Abstractions;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.EngineChecks;

/// <summary>Log-probabilities of every fixture checkpoint equal the ones Hugging Face transformers computes
/// (float64 reference, tools/fixtures/make_fixtures.py), through prefill and through token-by-token decode.</summary>
public class ParityTests(ITestOutputHelper output)
{
    public static TheoryData<string> Models => new(Fixtures.ModelNames);

    [Theory]
    [MemberData(nameof(Models))]
    public void PrefillLogprobsMatchTransformers(string name)
    {
        string dir = Fixtures.Model(name);
        var reference = Fixtures.LoadReference(dir);
        using var model = Transformer.Load(dir);
        double[] lp = Scorer.TokenLogprobs(new CpuEngine(model), reference.TokenIds);
        double maxDiff = MaxAbsDiff(lp, reference.TokenLogprobs);
        output.WriteLine($"{name}: max |Δ log p| = {maxDiff:E2} over {lp.Length} tokens");
        Assert.True(maxDiff <= 1e-4, $"{name}: max abs difference {maxDiff:E3} > 1e-4");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void DecodeLogprobsMatchTransformers(string name)
    {
        string dir = Fixtures.Model(name);
        var reference = Fixtures.LoadReference(dir);
        using var model = Transformer.Load(dir);
        double[] lp = DecodeLogprobs(model, reference.TokenIds, DType.F32);
        double maxDiff = MaxAbsDiff(lp, reference.TokenLogprobs);
        output.WriteLine($"{name}: decode max |Δ log p| = {maxDiff:E2}");
        Assert.True(maxDiff <= 1e-4, $"{name}: max abs difference {maxDiff:E3} > 1e-4");
    }

    [Theory]
    [InlineData(DType.BF16, 0.05)]
    [InlineData(DType.F16, 0.01)]
    public void ReducedPrecisionCacheStaysClose(DType type, double tolerance)
    {
        string dir = Fixtures.Model("llama3-gqa");
        var reference = Fixtures.LoadReference(dir);
        using var model = Transformer.Load(dir);
        double maxDiff = MaxAbsDiff(DecodeLogprobs(model, reference.TokenIds, type), reference.TokenLogprobs);
        output.WriteLine($"{type} cache: max |Δ log p| = {maxDiff:E2}");
        Assert.True(maxDiff <= tolerance, $"{type} cache: {maxDiff:E3} > {tolerance}");
        Assert.True(maxDiff > 0, "a reduced-precision cache must round something");
    }

    /// <summary>A q8 cache on the bundled model (heads of 64: two blocks of 32) against transformers' log-probabilities,
    /// beside the bf16 cache on the same tokens: 8-bit entries with a scale per 32 move log p about twice as far as
    /// bf16 rounding does (0.072 against 0.036 at worst over 401 tokens).</summary>
    [Fact]
    public void Q8CacheStaysCloseOnTheBundledModel()
    {
        string dir = Fixtures.BundledModel;
        var reference = Fixtures.LoadReference(dir);
        using var model = Transformer.Load(dir);
        double bf16 = MaxAbsDiff(DecodeLogprobs(model, reference.TokenIds, DType.BF16), reference.TokenLogprobs);
        double q8 = MaxAbsDiff(DecodeLogprobs(model, reference.TokenIds, DType.Q8), reference.TokenLogprobs);
        output.WriteLine($"bundled model, {reference.TokenIds.Length} tokens: max |Δ log p| bf16 cache {bf16:E2}, q8 cache {q8:E2}");
        Assert.True(q8 > 0, "a q8 cache must round something");
        Assert.True(q8 <= 0.1, $"q8 cache: {q8:E3} > 0.1");
    }

    /// <summary>Checkpoints written by older transformers keep rope_theta and rope_scaling at the top level instead
    /// of rope_parameters; both forms must give the same model.</summary>
    [Fact]
    public void LegacyRopeConfigFormGivesTheSameModel()
    {
        using var tmp = new Fixtures.TempDir();
        string src = Fixtures.Model("llama3-gqa");
        foreach (string f in Directory.GetFiles(src)) File.Copy(f, tmp.File(Path.GetFileName(f)));
        var cfg = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(tmp.File("config.json")))!.AsObject();
        var rope = cfg["rope_parameters"]!.AsObject();
        cfg.Remove("rope_parameters");
        cfg["rope_theta"] = rope["rope_theta"]!.GetValue<double>();
        rope.Remove("rope_theta");
        cfg["rope_scaling"] = rope;
        File.WriteAllText(tmp.File("config.json"), cfg.ToJsonString());
        var reference = Fixtures.LoadReference(src);
        using var model = Transformer.Load(tmp.Path);
        Assert.Equal(RopeType.Llama3, model.Config.Rope.Type);
        double maxDiff = MaxAbsDiff(Scorer.TokenLogprobs(new CpuEngine(model), reference.TokenIds), reference.TokenLogprobs);
        Assert.True(maxDiff <= 1e-4, $"legacy form: {maxDiff:E3}");
    }

    /// <summary>Prefill the first token, then decode the rest one at a time, collecting log p of each next token.</summary>
    internal static double[] DecodeLogprobs(Transformer model, int[] ids, DType cacheType)
    {
        using var cache = model.CreateCache(ids.Length, cacheType);
        var ws = new DecodeWorkspace(model, cache);
        var result = new double[ids.Length - 1];
        model.Prefill(ids.AsSpan(0, 1), cache, ws.Logits);
        for (int i = 1; i < ids.Length; i++)
        {
            result[i - 1] = Logits.LogSoftmaxAt(ws.Logits, ids[i]);
            if (i < ids.Length - 1) model.Decode(ids[i], cache, ws);
        }
        return result;
    }

    internal static double MaxAbsDiff(double[] a, double[] b)
    {
        Assert.Equal(b.Length, a.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }
}
