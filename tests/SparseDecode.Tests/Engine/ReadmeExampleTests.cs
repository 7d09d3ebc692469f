using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Tokenization;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.EngineApi;

/// <summary>The README's library example, as written there, so that the API it shows keeps compiling and running.</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void LoadGenerateWithAMethodAndStream()
    {
        string dir = Fixtures.BundledModel;
        using var engine = CpuEngine.Load(dir);
        var tokenizer = Tokenizer.FromDirectory(dir);
        var text = tokenizer.CreateStreamingDecoder();
        var options = new GenerationOptions
        {
            MaxTokens = 16,
            Method = SelectorSpec.Parse("lfps", "256", new Dictionary<string, string>()),
            StopTokenIds = engine.Config.EosTokenIds.ToArray(),
        };
        var streamed = new System.Text.StringBuilder();
        var result = new Generator(engine).Generate(tokenizer.Encode("def fibonacci(n):"), options, id => streamed.Append(text.Push(id)));
        streamed.Append(text.Flush());
        Assert.InRange(result.Tokens.Length, 1, 16);
        Assert.Equal(tokenizer.Decode(result.Tokens, skipSpecialTokens: true), streamed.ToString());
        Assert.True(result.DecodeTokensPerSecond > 0);
    }
}
