using System.Text;
using System.Text.Json.Nodes;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.ModelChecks;

/// <summary>Every malformed checkpoint is refused with a ModelFormatException naming the file and the problem.</summary>
public class LoaderErrorTests
{
    internal static Fixtures.TempDir CopyOf(string fixture)
    {
        var tmp = new Fixtures.TempDir();
        foreach (string f in Directory.GetFiles(Fixtures.Model(fixture)))
            File.Copy(f, tmp.File(Path.GetFileName(f)));
        return tmp;
    }

    internal static ModelFormatException Refused(string dir) =>
        Assert.Throws<ModelFormatException>(() => { using var _ = Transformer.Load(dir); });

    [Fact]
    public void MissingDirectory()
    {
        var e = Refused("/nonexistent/model-dir");
        Assert.Contains("/nonexistent/model-dir", e.Message);
    }

    [Fact]
    public void MissingConfig()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        File.Delete(tmp.File("config.json"));
        Assert.Contains("config.json: file not found", Refused(tmp.Path).Message);
    }

    [Fact]
    public void BadJson()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        File.WriteAllText(tmp.File("config.json"), "{ \"architectures\": [\"Qwen2ForCausalLM\"], ");
        var e = Refused(tmp.Path);
        Assert.Contains("config.json", e.Message);
        Assert.Contains("not valid JSON", e.Message);
    }

    [Fact]
    public void UnknownArchitecture()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        var cfg = JsonNode.Parse(File.ReadAllText(tmp.File("config.json")))!;
        cfg["architectures"] = new JsonArray("GPT2LMHeadModel");
        File.WriteAllText(tmp.File("config.json"), cfg.ToJsonString());
        Assert.Contains("architecture 'GPT2LMHeadModel' is not supported", Refused(tmp.Path).Message);
    }

    [Fact]
    public void WrongShape()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        var cfg = JsonNode.Parse(File.ReadAllText(tmp.File("config.json")))!;
        cfg["intermediate_size"] = 999;
        File.WriteAllText(tmp.File("config.json"), cfg.ToJsonString());
        var e = Refused(tmp.Path);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("expected [999,", e.Message);
    }

    [Fact]
    public void TruncatedFile()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        var bytes = File.ReadAllBytes(tmp.File("model.safetensors"));
        File.WriteAllBytes(tmp.File("model.safetensors"), bytes[..^100]);
        var e = Refused(tmp.Path);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("outside the", e.Message);
    }

    [Fact]
    public void HeaderPastTheEnd()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        var bytes = File.ReadAllBytes(tmp.File("model.safetensors"));
        BitConverter.GetBytes((ulong)bytes.Length * 4).CopyTo(bytes, 0);
        File.WriteAllBytes(tmp.File("model.safetensors"), bytes);
        Assert.Contains("runs past the end", Refused(tmp.Path).Message);
    }

    [Fact]
    public void CorruptHeaderJson()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        var bytes = File.ReadAllBytes(tmp.File("model.safetensors"));
        bytes[8] = (byte)'X';
        File.WriteAllBytes(tmp.File("model.safetensors"), bytes);
        Assert.Contains("header is not valid JSON", Refused(tmp.Path).Message);
    }

    [Fact]
    public void MissingTensor()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        var bytes = File.ReadAllBytes(tmp.File("model.safetensors"));
        int headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        string header = Encoding.UTF8.GetString(bytes, 8, headerLength);
        Assert.Contains("\"model.norm.weight\"", header);
        Encoding.UTF8.GetBytes(header.Replace("\"model.norm.weight\"", "\"model.norX.weight\"")).CopyTo(bytes, 8);
        File.WriteAllBytes(tmp.File("model.safetensors"), bytes);
        Assert.Contains("tensor 'model.norm.weight' is missing", Refused(tmp.Path).Message);
    }

    [Fact]
    public void MissingShard()
    {
        using var tmp = CopyOf("llama3-gqa");
        string shard = Directory.GetFiles(tmp.Path, "model-*.safetensors").Order().Last();
        File.Delete(shard);
        var e = Refused(tmp.Path);
        Assert.Contains(Path.GetFileName(shard), e.Message);
        Assert.Contains("file not found", e.Message);
    }

    [Fact]
    public void UnsupportedRopeType()
    {
        using var tmp = CopyOf("qwen2-bias-tied");
        var cfg = JsonNode.Parse(File.ReadAllText(tmp.File("config.json")))!;
        cfg["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 };
        cfg.AsObject().Remove("rope_parameters");
        File.WriteAllText(tmp.File("config.json"), cfg.ToJsonString());
        Assert.Contains("rope type 'yarn' is not supported", Refused(tmp.Path).Message);
    }
}
