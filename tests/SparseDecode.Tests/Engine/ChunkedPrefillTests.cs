using SparseDecode.Engine;
using SparseDecode.Cpu;
using SparseDecode.Cli.Output;

namespace SparseDecode.Tests.EngineApi;

/// <summary>A prefill that reports progress is the same prefill: equal logits and generated tokens, progress after
/// every chunk up to the whole prompt.</summary>
public class ChunkedPrefillTests
{
    [Fact]
    public void ReportingPrefillGeneratesTheSameTokensAndReportsEveryChunk()
    {
        using var model = Transformer.Load(Fixtures.Model("llama3-gqa"));
        model.PrefillChunk = 7;
        int[] prompt = Enumerable.Range(0, 40).Select(i => (i * 37 + 11) % model.Config.VocabSize).ToArray();
        var plain = new Generator(new CpuEngine(model)).Generate(prompt, new GenerationOptions { MaxTokens = 8 });
        var seen = new List<(int Done, int Total)>();
        var reported = new Generator(new CpuEngine(model)).Generate(prompt, new GenerationOptions { MaxTokens = 8, PrefillProgress = (d, t) => seen.Add((d, t)) });
        Assert.Equal(plain.Tokens, reported.Tokens);
        Assert.Equal([7, 14, 21, 28, 35, 40], seen.Select(s => s.Done));
        Assert.All(seen, s => Assert.Equal(40, s.Total));
    }

    [Fact]
    public void ProgressLineFitsAn80ColumnTerminalAndShowsTheEta()
    {
        string line = SparseDecode.Cli.Output.ProgressLine.Render("prefill", 0.45, 30, 3600, 8000);
        Assert.True(line.Length <= 60, line);
        Assert.Contains("45%", line);
        Assert.Contains("ETA 37 s", line);
        Assert.Contains("3600/8000", line);
    }
}
