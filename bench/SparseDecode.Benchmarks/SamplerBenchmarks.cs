using BenchmarkDotNet.Attributes;
using SparseDecode.Engine;

namespace SparseDecode.Benchmarks;

/// <summary>One draw of the host's <see cref="Sampler"/> from a row of logits: what the CPU engine, and the GPU for a
/// request whose logits are adjusted, pay per token and sequence. Greedy is a pass for the largest logit; top-k and
/// top-p find their cut over the whole vocabulary.</summary>
[InProcess]
[WarmupCount(2)]
[IterationCount(5)]
public class SamplerBenchmarks
{
    [Params(8192, 128256)]
    public int Vocabulary;

    [Params("greedy", "top-p 0.95", "top-k 50")]
    public string Setting = "";

    private float[] _logits = [];
    private Sampler _sampler = null!;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(3);
        _logits = new float[Vocabulary];
        for (int i = 0; i < _logits.Length; i++) _logits[i] = (float)(rng.NextDouble() * 8 - 4);
        _sampler = new Sampler(Setting switch
        {
            "greedy" => SamplingOptions.Greedy,
            "top-p 0.95" => new SamplingOptions(0.8f, 0, 0.95f, Seed: 1),
            _ => new SamplingOptions(0.8f, 50, Seed: 1),
        });
    }

    [Benchmark]
    public int Draw() => _sampler.Next(_logits);
}
