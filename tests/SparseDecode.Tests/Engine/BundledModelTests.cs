using System.Text.Json;
using SparseDecode.Engine;
using Xunit.Abstractions;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.EngineChecks;

/// <summary>The bundled model loads, its log-probabilities on a held-out snippet equal the ones PyTorch computed
/// at export (float64 from the same bf16 weights), and it answers a retrieval prompt.</summary>
public class BundledModelTests(ITestOutputHelper output)
{
    [Fact]
    public void LogprobsMatchExportReference()
    {
        string dir = Fixtures.BundledModel;
        var reference = Fixtures.LoadReference(dir);
        using var model = Transformer.Load(dir);
        double[] lp = Scorer.TokenLogprobs(new CpuEngine(model), reference.TokenIds);
        double maxDiff = ParityTests.MaxAbsDiff(lp, reference.TokenLogprobs);
        output.WriteLine($"bundled model: max |Δ log p| = {maxDiff:E2} over {lp.Length} tokens, mean log p {lp.Average():F3}");
        Assert.True(maxDiff <= 1e-4, $"max abs difference {maxDiff:E3} > 1e-4");
    }

    [Fact]
    public void AnswersTheRetrievalPrompt()
    {
        string dir = Fixtures.BundledModel;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "reference.json")));
        var r = doc.RootElement.GetProperty("retrieval");
        int[] prompt = r.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] answer = r.GetProperty("answer_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        using var model = Transformer.Load(dir);
        var result = new Generator(new CpuEngine(model)).Generate(prompt, new GenerationOptions { MaxTokens = answer.Length });
        output.WriteLine($"prompt {prompt.Length} tokens; expected [{string.Join(",", answer)}], got [{string.Join(",", result.Tokens)}]");
        Assert.Equal(answer, result.Tokens);
    }
}
