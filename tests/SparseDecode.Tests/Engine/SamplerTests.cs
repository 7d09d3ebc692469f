using SparseDecode.Engine;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.EngineChecks;

public class SamplerTests
{
    private static readonly float[] Logits = [1.0f, 3.0f, 2.5f, -1f, 0.5f];

    [Fact]
    public void GreedyTakesTheArgmax() => Assert.Equal(1, new Sampler(SamplingOptions.Greedy).Next(Logits));

    [Fact]
    public void TopKOfOneAndTinyTopPAreGreedy()
    {
        for (ulong seed = 0; seed < 20; seed++)
        {
            Assert.Equal(1, new Sampler(new SamplingOptions(1f, TopK: 1, Seed: seed)).Next(Logits));
            Assert.Equal(1, new Sampler(new SamplingOptions(1f, TopP: 0.01f, Seed: seed)).Next(Logits));
        }
    }

    [Fact]
    public void SameSeedSameDraws()
    {
        var a = new Sampler(new SamplingOptions(0.8f, Seed: 42));
        var b = new Sampler(new SamplingOptions(0.8f, Seed: 42));
        for (int i = 0; i < 50; i++) Assert.Equal(a.Next(Logits), b.Next(Logits));
    }

    [Fact]
    public void FrequenciesFollowTheSoftmax()
    {
        var s = new Sampler(new SamplingOptions(1f, Seed: 7));
        var counts = new int[Logits.Length];
        const int draws = 40000;
        for (int i = 0; i < draws; i++) counts[s.Next(Logits)]++;
        double z = Logits.Sum(l => Math.Exp(l));
        for (int i = 0; i < Logits.Length; i++)
        {
            double p = Math.Exp(Logits[i]) / z;
            double sd = Math.Sqrt(p * (1 - p) / draws);
            Assert.True(Math.Abs(counts[i] / (double)draws - p) < 5 * sd + 1e-4, $"token {i}: {counts[i] / (double)draws:F4} vs {p:F4}");
        }
    }

    [Fact]
    public void TopPKeepsTheSmallestNucleus()
    {
        // p ≈ [0.066, 0.49, 0.30, 0.009, 0.04]: top-p 0.7 keeps tokens 1 and 2 only.
        var s = new Sampler(new SamplingOptions(1f, TopP: 0.7f, Seed: 3));
        var seen = new HashSet<int>();
        for (int i = 0; i < 2000; i++) seen.Add(s.Next(Logits));
        Assert.Equal([1, 2], seen.Order());
    }

    [Theory]
    [InlineData(-1f, 0, 1f)]
    [InlineData(1f, -2, 1f)]
    [InlineData(1f, 0, 0f)]
    [InlineData(1f, 0, 1.5f)]
    public void InvalidOptionsAreRefused(float t, int k, float p) =>
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions(t, k, p)));

    /// <summary>Temperatures down to the smallest subnormal once divided the logits into infinities and sampled
    /// garbage; they now equal greedy, and moderate temperatures still sample.</summary>
    [Theory]
    [InlineData(1e-40f)]
    [InlineData(float.Epsilon)]
    [InlineData(1e-7f)]
    [InlineData(1e-5f)]
    public void TinyTemperatureIsGreedy(float t)
    {
        float[] large = [900f, 3000f, 2999.5f, -1e30f, 0f];
        for (ulong seed = 0; seed < 20; seed++)
        {
            Assert.Equal(1, new Sampler(new SamplingOptions(t, Seed: seed)).Next(Logits));
            Assert.Equal(1, new Sampler(new SamplingOptions(t, Seed: seed)).Next(large));
        }
    }

    [Theory]
    [InlineData(float.NaN, 0f)]
    [InlineData(float.PositiveInfinity, 0f)]
    [InlineData(float.NaN, 1f)]
    [InlineData(float.PositiveInfinity, 0.8f)]
    public void NonFiniteLogitsStopWithAClearError(float bad, float t)
    {
        float[] logits = [1f, 2f, bad, 0f];
        var e = Assert.Throws<NonFiniteLogitsException>(() => new Sampler(new SamplingOptions(t, Seed: 1)).Next(logits));
        Assert.Contains("non-finite logits", e.Message);
        float[] allMasked = [float.NegativeInfinity, float.NegativeInfinity];
        Assert.Throws<NonFiniteLogitsException>(() => new Sampler(SamplingOptions.Greedy).Next(allMasked));
    }

    /// <summary>A draw walks the kept tokens in id order: with top-k 2 the kept tokens are 1 (p ≈ 0.62) and 2
    /// (p ≈ 0.38), and a small uniform number picks 1, one past its share picks 2.</summary>
    [Fact]
    public void TheUniformNumberWalksTheKeptTokensInIdOrder()
    {
        var s = new Sampler(new SamplingOptions(1f, TopK: 2));
        double share1 = 1 / (1 + Math.Exp(-0.5));
        Assert.Equal(1, s.Choose(Logits, 0.0));
        Assert.Equal(1, s.Choose(Logits, share1 - 1e-4));
        Assert.Equal(2, s.Choose(Logits, share1 + 1e-4));
        Assert.Equal(2, s.Choose(Logits, 0.999999));
        // ties at the cut: the lower id is kept
        float[] tied = [0f, 2f, 1f, 2f, 2f];
        var k2 = new Sampler(new SamplingOptions(1f, TopK: 2));
        Assert.Equal(1, k2.Choose(tied, 0.25));
        Assert.Equal(3, k2.Choose(tied, 0.75));
        Assert.Throws<ArgumentOutOfRangeException>(() => k2.Choose(tied, 1.0));
    }

    /// <summary>Next is Choose with the generator's next number: what a draw made elsewhere with that number
    /// (<see cref="Sampler.Uniform"/>) must equal.</summary>
    [Theory]
    [InlineData(0.7f, 0, 1f)]
    [InlineData(1.3f, 3, 1f)]
    [InlineData(1f, 0, 0.8f)]
    [InlineData(0.9f, 4, 0.7f)]
    public void NextIsChooseWithTheGeneratorsNumber(float t, int k, float p)
    {
        var rng = new Random(5);
        var logits = new float[300];
        var drawing = new Sampler(new SamplingOptions(t, k, p, Seed: 17));
        var numbers = new Sampler(new SamplingOptions(t, k, p, Seed: 17));
        for (int i = 0; i < 200; i++)
        {
            for (int j = 0; j < logits.Length; j++) logits[j] = (float)(rng.NextDouble() * 6 - 3);
            Assert.Equal(drawing.Next(logits), numbers.Choose(logits, numbers.Uniform()));
        }
    }

    /// <summary>OpenAI's penalties over the tokens drawn so far: greedy over [2, 1.9, 0] takes 0, then with a frequency
    /// penalty of 0.3 token 0 stands at 1.7 and 1 wins; a presence penalty subtracts once, however often the token came.</summary>
    [Fact]
    public void PenaltiesLowerTheTokensAlreadyDrawn()
    {
        float[] logits = [2f, 1.9f, 0f];
        var frequency = new Sampler(new SamplingOptions(FrequencyPenalty: 0.3f));
        Assert.Equal([0, 1, 0, 1, 0], Enumerable.Range(0, 5).Select(_ => frequency.Next(logits)).ToArray());
        var presence = new Sampler(new SamplingOptions(PresencePenalty: 0.5f));
        // after 0 and 1 have both come once, both are lowered by 0.5 alone: 1.5 against 1.4, so 0 again and again
        Assert.Equal([0, 1, 0, 0, 0], Enumerable.Range(0, 5).Select(_ => presence.Next(logits)).ToArray());
        // Choose applies them but draws nothing: the counts stay
        Assert.Equal(0, presence.Choose(logits, 0.5));
        Assert.Equal(0, new Sampler(new SamplingOptions(PresencePenalty: -1f)).Next(logits));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions(FrequencyPenalty: 2.5f)));
        Assert.Throws<ArgumentException>(() => new Sampler(new SamplingOptions(PresencePenalty: float.NaN)));
    }

    /// <summary>The kept set found by radix selection (no sort) is the naive one: sort by probability (ties by id),
    /// keep top-k, then up to where the mass reaches top-p — on logits with many exact ties.</summary>
    [Theory]
    [InlineData(1f, 50, 1f)]
    [InlineData(1f, 0, 0.9f)]
    [InlineData(0.7f, 300, 0.95f)]
    [InlineData(1.5f, 7, 0.3f)]
    [InlineData(1f, 5000, 1f)]
    public void TheKeptTokensAreTheNaiveSortsOnTiedLogits(float t, int k, float topP)
    {
        var rng = new Random(9);
        const int n = 3000;
        var logits = new float[n];
        var probs = new float[n];
        for (int trial = 0; trial < 20; trial++)
        {
            for (int i = 0; i < n; i++) logits[i] = MathF.Round((float)(rng.NextDouble() * 8 - 4)) / (trial % 2 + 1);
            new Sampler(new SamplingOptions(t, k, topP)).Distribution(logits, probs);
            // the naive reference, with the sampler's own arithmetic for the probabilities
            var p = new float[n];
            float max = logits.Max();
            for (int i = 0; i < n; i++) p[i] = (logits[i] - max) / t;
            SparseDecode.Engine.Logits.Softmax(p);
            var order = Enumerable.Range(0, n).OrderByDescending(i => p[i]).ThenBy(i => i).ToArray();
            int keep = k > 0 ? Math.Min(k, n) : n;
            double sum = 0;
            for (int i = 0; i < keep && topP < 1; i++)
                if ((sum += p[order[i]]) >= topP)
                {
                    keep = i + 1;
                    break;
                }
            var kept = order.Take(keep).Order().ToArray();
            Assert.Equal(kept, Enumerable.Range(0, n).Where(i => probs[i] > 0).ToArray());
        }
    }
}
