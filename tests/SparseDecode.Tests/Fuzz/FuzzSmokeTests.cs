using System.Diagnostics;
using SparseDecode.Fuzz;

namespace SparseDecode.Tests.Fuzz;

/// <summary>The fuzz targets' smoke run: each over its seed corpus (tests/SparseDecode.Fuzz/corpus) and a fixed
/// set of mutants of every seed, in seconds. A target throws only on a bug; longer, coverage-guided runs are
/// described in docs/hardening.md.</summary>
public class FuzzSmokeTests
{
    [Theory]
    [InlineData("safetensors", 2000)]
    [InlineData("config", 1000)]
    [InlineData("tokenizer", 100)]
    [InlineData("request", 1000)]
    [InlineData("results", 1000)]
    public void TargetSurvivesItsCorpusAndMutants(string name, int mutations)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "corpus", name);
        var seeds = Directory.GetFiles(dir).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();
        Assert.NotEmpty(seeds);
        var watch = Stopwatch.StartNew();
        int runs = FuzzTargets.Smoke(FuzzTargets.All[name], seeds, mutations);
        Assert.Equal(seeds.Count * (mutations + 1), runs);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"The smoke run took {watch.Elapsed}.");
    }
}
