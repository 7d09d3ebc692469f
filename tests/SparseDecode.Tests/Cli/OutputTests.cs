using System.Text.Json;
using System.Text.Json.Nodes;

namespace SparseDecode.Tests.Cli;

/// <summary>Output for machines (--json: one JSON object on stdout, nothing else) and for people (a note when the
/// context ends a generation).</summary>
[Collection("console")]
public class OutputTests
{
    /// <summary>The bundled model with its context cut to a few tokens: files copied, config.json rewritten.</summary>
    private static Fixtures.TempDir ShortContextModel(int context)
    {
        var tmp = new Fixtures.TempDir();
        foreach (string f in Directory.GetFiles(Fixtures.BundledModel))
        {
            string name = Path.GetFileName(f);
            if (name == "config.json")
            {
                var cfg = JsonNode.Parse(File.ReadAllText(f))!;
                cfg["max_position_embeddings"] = context;
                File.WriteAllText(tmp.File(name), cfg.ToJsonString());
            }
            else File.Copy(f, tmp.File(name));
        }
        return tmp;
    }

    [Fact]
    public void GenerateJsonIsOneObjectWithTheText()
    {
        var (code, stdout, stderr) = CliTests.Run("generate", "--prompt", "def f(x):", "--max-tokens", "6", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(6, root.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(6, root.GetProperty("token_ids").GetArrayLength());
        Assert.Equal("length", root.GetProperty("finish_reason").GetString());
        Assert.True(root.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.NotEqual("", root.GetProperty("text").GetString());
    }

    [Fact]
    public void GenerationStoppedByTheContextSaysSo()
    {
        using var model = ShortContextModel(16);
        var (code, stdout, stderr) = CliTests.Run("generate", "--model", model.Path, "--prompt", "def f(x):", "--max-tokens", "64", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        int prompt = doc.RootElement.GetProperty("prompt_tokens").GetInt32();
        // every position holds a token; the last token generated is sampled from the last position's logits
        int generated = 16 - prompt + 1;
        Assert.Equal(generated, doc.RootElement.GetProperty("completion_tokens").GetInt32());
        Assert.Equal("context", doc.RootElement.GetProperty("finish_reason").GetString());
        Assert.Contains($"note: stopped at the model's context limit of 16 tokens (prompt {prompt} + {generated} generated), before --max-tokens 64.", stderr);
        // a generation that ends at its own --max-tokens gets no note
        Assert.DoesNotContain("note:", CliTests.Run("generate", "--model", model.Path, "--prompt", "def f(x):", "--max-tokens", "2").stderr);
    }
}
