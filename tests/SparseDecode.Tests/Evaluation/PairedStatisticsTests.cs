using System.Numerics;
using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>The paired statistics against values computed by hand or by naive arithmetic: the exact McNemar p-value,
/// the sign-flip permutation test, the stratified bootstrap against the exact bootstrap distribution of small
/// samples, Connor's sample size against his worked example, and the normal quantile against tabled values.</summary>
public class PairedStatisticsTests
{
    private static List<ScorePair> Pairs(double[] x, double[] y, string stratum = "s") =>
        x.Zip(y, (a, b) => new ScorePair(stratum, a, b)).ToList();

    /// <summary>Σ_{i ≤ k} C(n, i) / 2^n with exact integers.</summary>
    private static double NaiveBinomialTail(int n, int k)
    {
        BigInteger sum = 0, c = 1;
        for (int i = 0; i <= k; i++)
        {
            if (i > 0) c = c * (n - i + 1) / i;
            sum += c;
        }
        return (double)(sum * 1_000_000_000_000 / BigInteger.Pow(2, n)) / 1e12;
    }

    [Fact]
    public void McNemarExactPValueMatchesTheBinomialTail()
    {
        // b = 10, c = 2: 2 · (1 + 12 + 66) / 4096
        Assert.Equal(2 * 79 / 4096.0, PairedStatistics.McNemarExactP(10, 2), 12);
        Assert.Equal(0.0386, PairedStatistics.McNemarExactP(10, 2), 4);
        Assert.Equal(PairedStatistics.McNemarExactP(10, 2), PairedStatistics.McNemarExactP(2, 10), 12);
        Assert.Equal(2 / 32.0, PairedStatistics.McNemarExactP(5, 0), 12);
        Assert.Equal(1, PairedStatistics.McNemarExactP(0, 0));
        Assert.Equal(1, PairedStatistics.McNemarExactP(7, 7));
        Assert.Equal(2 * NaiveBinomialTail(44, 14), PairedStatistics.McNemarExactP(30, 14), 10);
        // 1,100 discordant pairs: 2^-1100 underflows a double, the log-space sum does not; the normal
        // approximation with continuity correction, z = (|b − c| − 1) / √(b + c), is close at this size
        double p = PairedStatistics.McNemarExactP(600, 500);
        double z = 99 / Math.Sqrt(1100);
        double normal = 2 * (1 - NormalCdf(z));
        Assert.InRange(p / normal, 0.9, 1.1);
    }

    /// <summary>Φ(z) by the Abramowitz–Stegun 7.1.26 erf approximation (error below 1.5e-7).</summary>
    private static double NormalCdf(double z)
    {
        double x = Math.Abs(z) / Math.Sqrt(2), t = 1 / (1 + 0.3275911 * x);
        double erf = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.Exp(-x * x);
        return z >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
    }

    [Fact]
    public void SignFlipTestIsMcNemarOnZeroOneScoresAndEnumeratesSmallSamples()
    {
        // ten pairs the method alone got right, two the reference alone, five both: the exact sign-flip test is McNemar's
        double[] d = [.. Enumerable.Repeat(1.0, 10), -1, -1, 0, 0, 0, 0, 0];
        Assert.Equal(PairedStatistics.McNemarExactP(10, 2), PairedStatistics.SignFlipP(d), 12);
        var (test, p) = PairedStatistics.Test(d);
        Assert.Equal(PairedStatistics.McNemarTest, test);
        Assert.Equal(0.0386, p, 4);
        // 0.5, 0.25, −0.25: of the 8 sign assignments, |Σ| ≥ 0.5 in 6 (1, 0.5, 0.5 and their negatives)
        Assert.Equal(0.75, PairedStatistics.SignFlipP([0.5, 0.25, -0.25, 0]), 12);
        Assert.Equal((PairedStatistics.SignFlipTest, 0.75), PairedStatistics.Test([0.5, 0.25, -0.25]));
        Assert.Equal(1, PairedStatistics.SignFlipP([0, 0]));
    }

    [Fact]
    public void SignFlipTestDrawsSeededSignsBeyondTheExactLimit()
    {
        // 20 differences of +0.25: exactly 2 of 2^20 assignments reach |Σ| = 5, so the drawn test's p is its floor
        double[] d = [.. Enumerable.Repeat(0.25, 20)];
        double p = PairedStatistics.SignFlipP(d);
        Assert.InRange(p, 1 / 10_001.0, 2 / 10_001.0);
        Assert.Equal(PairedStatistics.MonteCarloSignFlipTest, PairedStatistics.Test(d).Test);
        // balanced signs: no evidence; the same seed gives the same p
        double[] mixed = [.. Enumerable.Range(0, 30).Select(i => (i % 2 == 0 ? 1 : -1) * 0.25 * (1 + i % 3))];
        double q = PairedStatistics.SignFlipP(mixed, seed: 7);
        Assert.InRange(q, 0.5, 1);
        Assert.Equal(q, PairedStatistics.SignFlipP(mixed, seed: 7));
    }

    [Fact]
    public void BootstrapIntervalIsTheExactBootstrapQuantileOfASmallSample()
    {
        // differences 1, 1, 0, 0, 0: a resample's mean is K/5 with K ~ Bin(5, 0.4); P(K = 0) = 0.078 > 2.5% and
        // P(K ≤ 3) = 0.913 < 97.5% ≤ P(K ≤ 4) = 0.990, so the exact 95% percentile interval is [0, 0.8]
        var pairs = Pairs([1, 1, 0, 0, 0], [0, 0, 0, 0, 0]);
        var (difference, ratio) = PairedStatistics.Bootstrap(pairs);
        Assert.Equal(new Interval(0, 0.8), difference);
        Assert.False(ratio.IsFinite); // the reference scored nothing: no ratio
        // ratio: X = 1, 1, 1, 0 over Y = 1, 1, 1, 1 is K/4 with K ~ Bin(4, 0.75): P(K = 0) = 0.004 < 2.5% <
        // P(K ≤ 1) = 0.051 and P(K ≤ 3) = 0.684, so [0.25, 1]
        var (d2, r2) = PairedStatistics.Bootstrap(Pairs([1, 1, 1, 0], [1, 1, 1, 1]));
        Assert.Equal(new Interval(0.25, 1), r2);
        Assert.Equal(new Interval(-0.75, 0), d2);
    }

    [Fact]
    public void BootstrapIsPairedStratifiedSeededAndContainsTheEstimate()
    {
        // the same difference in every pair: every resample has it, whatever the scores themselves
        var constant = Pairs([1, 0.5, 0.75, 1], [0.75, 0.25, 0.5, 0.75]);
        var (ci, _) = PairedStatistics.Bootstrap(constant);
        Assert.Equal(0.25, ci.Low, 12);
        Assert.Equal(0.25, ci.High, 12);
        // strata keep their sizes: one stratum all +1, the other all 0, so every resample's mean is 0.5 exactly
        var strata = Pairs([1, 1, 1], [0, 0, 0], "a").Concat(Pairs([1, 0, 1], [1, 0, 1], "b")).ToList();
        Assert.Equal(new Interval(0.5, 0.5), PairedStatistics.Bootstrap(strata).Difference);
        // a mixed sample: the interval holds the estimate, and a seed reproduces it
        var rng = new Random(3);
        var mixed = Enumerable.Range(0, 40).Select(i => new ScorePair(i % 2 == 0 ? "a" : "b", rng.Next(2), rng.Next(2))).ToList();
        var first = PairedStatistics.Bootstrap(mixed, seed: 5);
        Assert.Equal(first, PairedStatistics.Bootstrap(mixed, seed: 5));
        double estimate = PairedStatistics.MeanDifference(mixed);
        Assert.InRange(estimate, first.Difference.Low, first.Difference.High);
        Assert.InRange(PairedStatistics.Ratio(mixed), first.Ratio.Low, first.Ratio.High);
        Assert.True(first.Difference.High > first.Difference.Low);
        Assert.Equal((Interval.None, Interval.None), PairedStatistics.Bootstrap([]));
    }

    [Fact]
    public void QuantileInterpolatesBetweenOrderStatistics()
    {
        double[] v = [1, 2, 3, 4, 5];
        Assert.Equal(1, PairedStatistics.Quantile(v, 0));
        Assert.Equal(3, PairedStatistics.Quantile(v, 0.5));
        Assert.Equal(1.1, PairedStatistics.Quantile(v, 0.025), 12); // position 4 · 0.025 = 0.1
        Assert.Equal(5, PairedStatistics.Quantile(v, 1));
    }

    [Fact]
    public void NormalQuantileMatchesTabledValues()
    {
        Assert.Equal(1.959963984540054, PairedStatistics.NormalQuantile(0.975), 12);
        Assert.Equal(0.8416212335729143, PairedStatistics.NormalQuantile(0.8), 12);
        Assert.Equal(-3.090232306167813, PairedStatistics.NormalQuantile(0.001), 12);
        Assert.Equal(-6.361340902404056, PairedStatistics.NormalQuantile(1e-10), 10);
        Assert.Equal(0, PairedStatistics.NormalQuantile(0.5), 15);
        Assert.Throws<ArgumentOutOfRangeException>(() => PairedStatistics.NormalQuantile(1));
    }

    [Fact]
    public void SampleSizeMatchesConnorsExampleAndTheFormula()
    {
        // Connor (1987), Biometrics 43:207, p. 209: discordant proportions 0.05 and 0.45, two-sided α = 0.05, power
        // 0.8 → 23 pairs
        Assert.Equal(23, PairedStatistics.SampleSize(0.5, 0.05 - 0.45));
        // ψ = 0.45, δ = 0.15 → 155 pairs
        Assert.Equal(155, PairedStatistics.SampleSize(0.45, 0.15));
        // ψ = 0.2, δ = 0.05 by hand: (1.959964 · √0.2 + 0.841621 · √0.1975)² / 0.0025 = 625.5 → 626
        double root = 1.959963984540054 * Math.Sqrt(0.2) + 0.8416212335729143 * Math.Sqrt(0.2 - 0.0025);
        Assert.Equal(626, (int)Math.Ceiling(root * root / 0.0025));
        Assert.Equal(626, PairedStatistics.SampleSize(0.2, 0.05));
        // 0/1 scores at the least discordance a 5-point difference allows, ψ = δ: (1.96 √0.05 + 0.84 √0.0475)² / 0.0025
        Assert.Equal(155, PairedStatistics.SampleSize(0.05, 0.05));
        // a second moment below δ² cannot hold a mean difference δ: raised to δ², where n = ⌈z²⌉ = ⌈3.84⌉
        Assert.Equal(4, PairedStatistics.SampleSize(0, 0.05));
        // more power, more pairs; a larger difference, fewer
        Assert.True(PairedStatistics.SampleSize(0.2, 0.05, power: 0.9) > 626);
        Assert.True(PairedStatistics.SampleSize(0.2, 0.1) < 626);
        Assert.Throws<ArgumentOutOfRangeException>(() => PairedStatistics.SampleSize(0.2, 0));
    }
}
