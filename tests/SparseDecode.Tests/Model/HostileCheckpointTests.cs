using System.Text;
using System.Text.Json.Nodes;
using SparseDecode.Engine;
using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Tests.Cli;

namespace SparseDecode.Tests.ModelChecks;

/// <summary>Checkpoints crafted to crash, bloat or fool the loader: each is refused with one sentence naming the
/// file and the field, or (NaN weights) stopped at the first step with a clear error.</summary>
public class HostileCheckpointTests
{
    private static Fixtures.TempDir WithConfig(Action<JsonObject> edit)
    {
        var tmp = LoaderErrorTests.CopyOf("qwen2-bias-tied");
        var cfg = JsonNode.Parse(File.ReadAllText(tmp.File("config.json")))!.AsObject();
        edit(cfg);
        File.WriteAllText(tmp.File("config.json"), cfg.ToJsonString());
        return tmp;
    }

    public static TheoryData<string, string, string> BadConfigs => new()
    {
        // field, JSON value, what the message must say
        { "num_hidden_layers", "2147483647", "'num_hidden_layers' is 2147483647, above the largest" },
        { "max_position_embeddings", "2147483647", "'max_position_embeddings' is 2147483647, above the largest" },
        { "vocab_size", "99999999999", "'vocab_size' is 99999999999, above the largest" },
        { "hidden_size", "-64", "'hidden_size' must be positive" },
        { "rms_norm_eps", "-1e-5", "'rms_norm_eps' must be in (0, 1)" },
        { "rms_norm_eps", "\"small\"", "'rms_norm_eps' must be a number" },
        { "rope_theta", "0", "'rope_theta' must be a positive finite number" },
        { "rope_theta", "-10000", "'rope_theta' must be a positive finite number" },
        { "rope_theta", "1e400", "'rope_theta' must be a positive finite number" },
        { "bos_token_id", "\"one\"", "'bos_token_id' must hold non-negative integer token ids" },
        { "eos_token_id", "[2, 1.5]", "'eos_token_id' must hold non-negative integer token ids" },
        { "eos_token_id", "{}", "'eos_token_id' must be a token id or an array" },
        { "eos_token_id", "[2, 320]", "'eos_token_id' 320 is outside the vocabulary of 320 ('vocab_size')." },
        { "bos_token_id", "128000", "'bos_token_id' 128000 is outside the vocabulary of 320 ('vocab_size')." },
        { "hidden_act", "3", "'hidden_act' must be a string" },
        { "dtype", "[1]", "'dtype' must be a string" },
        { "architectures", "[7]", "'architectures' must hold strings" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void BadConfigValuesAreRefusedNamingTheField(string field, string value, string message)
    {
        using var tmp = WithConfig(c =>
        {
            c[field] = JsonNode.Parse(value);
            if (field == "rope_theta") c.Remove("rope_parameters");
        });
        var e = LoaderErrorTests.Refused(tmp.Path);
        Assert.Contains("config.json", e.Message);
        Assert.Contains(message, e.Message);
    }

    /// <summary>Found by the fuzz smoke run: invalid UTF-8 in config.json escaped as an InvalidOperationException.</summary>
    [Fact]
    public void InvalidUtf8InConfigIsRefused()
    {
        using var tmp = LoaderErrorTests.CopyOf("qwen2-bias-tied");
        var bytes = File.ReadAllBytes(tmp.File("config.json"));
        int at = Encoding.UTF8.GetString(bytes).IndexOf("silu", StringComparison.Ordinal);
        bytes[at] = 0xFF;
        File.WriteAllBytes(tmp.File("config.json"), bytes);
        var e = LoaderErrorTests.Refused(tmp.Path);
        Assert.EndsWith("config.json: holds a string that is not valid UTF-8 or has a lone surrogate (under 'hidden_act').", e.Message);
    }

    [Fact]
    public void RopeScalingValuesAreChecked()
    {
        using var tmp = WithConfig(c => c["rope_parameters"] = new JsonObject { ["rope_type"] = "llama3", ["rope_theta"] = 1e6, ["factor"] = 8.0, ["low_freq_factor"] = 4.0, ["high_freq_factor"] = 4.0 });
        Assert.Contains("'high_freq_factor' (4) must exceed 'low_freq_factor' (4)", LoaderErrorTests.Refused(tmp.Path).Message);
        using var tmp2 = WithConfig(c => c["rope_parameters"] = new JsonObject { ["rope_type"] = "linear", ["rope_theta"] = 1e6, ["factor"] = -2.0 });
        Assert.Contains("'factor' must be a positive finite number", LoaderErrorTests.Refused(tmp2.Path).Message);
    }

    /// <summary>A 4M-position config once built 1 GB of RoPE tables at load; now tables grow with the positions used.</summary>
    [Fact]
    public void HugeContextLoadsWithoutBuildingItsRopeTables()
    {
        using var tmp = WithConfig(c => c["max_position_embeddings"] = 4_000_000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        using (var t = Transformer.Load(tmp.Path))
            Assert.Equal(4_000_000, t.Config.MaxPositions);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 32 << 20, "Loading allocated more than 32 MB.");
    }

    [Fact]
    public void LazyRopeTablesEqualEagerOnesAndGrowOnDemand()
    {
        var scaling = new RopeScaling(RopeType.Llama3, 500000, 8, 1, 4, 8192);
        var lazy = new Rope(scaling, 64, 1 << 26);
        Assert.Equal(Rope.InitialPositions, lazy.BuiltPositions);
        var inv = scaling.InverseFrequencies(64);
        foreach (int pos in new[] { 0, 4095, 4096, 100_000, 9_999 })
        {
            var v = new float[64];
            v[3] = 1; // rotates into dimensions 3 and 35 by angle inv[3] × pos
            lazy.Apply(v, 1, pos);
            float angle = (float)inv[3] * pos;
            Assert.Equal((float)Math.Cos(angle), v[3]);
            Assert.Equal((float)Math.Sin(angle), v[35]);
        }
        Assert.InRange(lazy.BuiltPositions, 100_001, 262_144);
        Assert.Throws<ArgumentOutOfRangeException>(() => lazy.Apply(new float[64], 1, 1 << 26));
        var small = new Rope(scaling, 8, 100);
        Assert.Equal(100 * 4, small.CosTable.Length);
    }

    [Fact]
    public void NaNWeightsAreFoundByCheckWeightsAndStopGeneration()
    {
        using var tmp = LoaderErrorTests.CopyOf("qwen2-bias-tied");
        Poison(tmp.File("model.safetensors"), "model.norm.weight", 5, float.NaN);

        var (code, _, stderr) = CliTests.Run("inspect", "--model", tmp.Path, "--check-weights");
        Assert.Equal(1, code);
        Assert.Contains("tensor 'model.norm.weight' holds NaN at element 5", stderr);
        var (ok, stdout, _) = CliTests.Run("inspect", "--model", LoaderErrorTests.CopyOf("qwen2-bias-tied").Path, "--check-weights");
        Assert.Equal(0, ok);
        Assert.Contains("every tensor is finite", stdout);

        // Without the check: the first step stops with one sentence (once: EOS at once and exit 0, or a JSON writer failure).
        var (scoreCode, scoreOut, scoreErr) = CliTests.Run("score", "--model", tmp.Path, "--token-ids", "1,2,3", "--json");
        Assert.Equal(1, scoreCode);
        Assert.Equal("", scoreOut);
        Assert.Contains("non-finite logits", scoreErr);
        using var t = Transformer.Load(tmp.Path);
        Assert.Throws<NonFiniteLogitsException>(() => new Generator(new CpuEngine(t)).Generate([1, 2, 3], new GenerationOptions { MaxTokens = 4 }));
    }

    [Fact]
    public void InfinityInHalfPrecisionIsFound()
    {
        using var tmp = LoaderErrorTests.CopyOf("mistral-f16");
        using (var store = WeightStore.Open(tmp.Path))
            Assert.Null(WeightCheck.FirstNonFinite(store));
        string file = Directory.GetFiles(tmp.Path, "*.safetensors").Order().First();
        var (name, begin, _) = Locate(file, n => n.EndsWith("norm.weight", StringComparison.Ordinal));
        var bytes = File.ReadAllBytes(file);
        BitConverter.GetBytes((ushort)0x7C00).CopyTo(bytes, begin + 2); // +∞ in f16, element 1
        File.WriteAllBytes(file, bytes);
        using var poisoned = WeightStore.Open(tmp.Path);
        Assert.Equal(new WeightCheck.Finding(name, 1, "infinity"), WeightCheck.FirstNonFinite(poisoned));
    }

    /// <summary>bf16 bits under an F16 label load as weights of the right shape and nonsense values.</summary>
    [Fact]
    public void Bf16WeightsLabelledF16AreRefused()
    {
        using var tmp = LoaderErrorTests.CopyOf("llama3-gqa-bf16");
        string file = tmp.File("model.safetensors");
        var bytes = File.ReadAllBytes(file);
        long headerLength = (long)BitConverter.ToUInt64(bytes, 0);
        // Same length, so every offset stays right: JSON allows the trailing spaces.
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength).Replace("\"dtype\":\"BF16\"", "\"dtype\":\"F16\" ");
        Encoding.UTF8.GetBytes(header).CopyTo(bytes, 8);
        File.WriteAllBytes(file, bytes);
        var e = LoaderErrorTests.Refused(tmp.Path);
        Assert.Matches(@"model\.safetensors: tensor '[a-z_.0-9]+' has dtype F16, but its values are bf16 bits \(read as f16, none lies near zero\); the header should say BF16\.$", e.Message);

        // The genuine f16 checkpoint is not mistaken for one.
        using var f16 = Transformer.Load(Fixtures.Model("mistral-f16"));
        Assert.Equal(DType.F16, f16.WeightType);
    }

    /// <summary>Writes NaN (or +∞) over one element of a tensor, in the tensor's own dtype.</summary>
    internal static void Poison(string file, string tensor, int element, float value)
    {
        var (_, begin, dtype) = Locate(file, n => n == tensor);
        var bytes = File.ReadAllBytes(file);
        if (dtype == "F32") BitConverter.GetBytes(value).CopyTo(bytes, begin + 4 * element);
        else BitConverter.GetBytes(dtype == "BF16" ? SparseDecode.Model.ElementConvert.SingleToBf16(value) : BitConverter.HalfToUInt16Bits((Half)value))
            .CopyTo(bytes, begin + 2 * element);
        File.WriteAllBytes(file, bytes);
    }

    /// <summary>The first tensor (in name order) matching `match`, the file offset of its data, and its dtype.</summary>
    private static (string Name, long Begin, string DType) Locate(string file, Func<string, bool> match)
    {
        var bytes = File.ReadAllBytes(file);
        long headerLength = (long)BitConverter.ToUInt64(bytes, 0);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, (int)headerLength))!.AsObject();
        var (name, entry) = header.Where(kv => kv.Key != "__metadata__" && match(kv.Key)).OrderBy(kv => kv.Key, StringComparer.Ordinal).First();
        return (name, 8 + headerLength + (long)entry!["data_offsets"]![0]!, (string)entry["dtype"]!);
    }
}
