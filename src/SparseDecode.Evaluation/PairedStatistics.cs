namespace SparseDecode.Evaluation;

/// <summary>One sample scored under two conditions: a method's score X and a reference's score Y (dense attention, or
/// the oracle top-k at the method's budget) on the same prompt decoded from the same prefill. Stratum names the
/// group the sample was drawn in (task and context), which the bootstrap keeps fixed.</summary>
public readonly record struct ScorePair(string Stratum, double X, double Y)
{
    public double Difference => X - Y;
}

/// <summary>Statistics of paired scores: the bootstrap interval of the mean difference and of the ratio of means,
/// the exact McNemar test for 0/1 scores, the sign-flip permutation test for fractional ones, and the sample size a
/// paired design needs to detect a given difference. Every random draw comes from a System.Random seeded by the
/// caller, so the same scores and seed give the same numbers on every run and platform.</summary>
public static class PairedStatistics
{
    /// <summary>Bootstrap resamples, and Monte Carlo sign flips where the exact permutation test is too large.</summary>
    public const int Resamples = 10_000;

    /// <summary>Above this many non-zero differences the sign-flip test draws <see cref="Resamples"/> sign vectors
    /// instead of enumerating all 2^m.</summary>
    public const int ExactSignFlipLimit = 16;

    /// <summary>The default seed of the bootstrap and of the Monte Carlo sign flips.</summary>
    public const int DefaultSeed = 1;

    public const string McNemarTest = "exact McNemar";
    public const string SignFlipTest = "exact sign-flip permutation";
    public const string MonteCarloSignFlipTest = "sign-flip permutation, 10,000 draws";

    /// <summary>The mean of X − Y over all pairs (NaN for none).</summary>
    public static double MeanDifference(IReadOnlyList<ScorePair> pairs) =>
        pairs.Count == 0 ? double.NaN : pairs.Sum(p => p.Difference) / pairs.Count;

    /// <summary>ΣX ÷ ΣY (NaN when ΣY is 0).</summary>
    public static double Ratio(IReadOnlyList<ScorePair> pairs)
    {
        double y = pairs.Sum(p => p.Y);
        return y == 0 ? double.NaN : pairs.Sum(p => p.X) / y;
    }

    /// <summary>Paired, stratified percentile bootstrap: each of `resamples` resamples draws, within every stratum,
    /// as many pairs as the stratum holds, with replacement, keeping each pair's X and Y together; the interval is
    /// the 2.5th and 97.5th percentiles (linear interpolation between order statistics, numpy's default) of the
    /// resamples' mean difference and of their ΣX ÷ ΣY. The ratio interval is None when a resample has ΣY = 0.
    /// Both are None for no pairs.</summary>
    public static (Interval Difference, Interval Ratio) Bootstrap(IReadOnlyList<ScorePair> pairs, int seed = DefaultSeed, int resamples = Resamples)
    {
        if (pairs.Count == 0) return (Interval.None, Interval.None);
        // strata in order of first appearance, so the draws depend only on the pairs' order, not on hashing
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var members = new List<List<ScorePair>>();
        foreach (var p in pairs)
        {
            if (!index.TryGetValue(p.Stratum, out int s))
            {
                index[p.Stratum] = s = members.Count;
                members.Add([]);
            }
            members[s].Add(p);
        }
        var strata = members.Select(m => m.ToArray()).ToList();
        var rng = new Random(seed);
        var differences = new double[resamples];
        var ratios = new double[resamples];
        bool ratioDefined = true;
        for (int r = 0; r < resamples; r++)
        {
            double sx = 0, sy = 0;
            foreach (var stratum in strata)
                for (int i = 0; i < stratum.Length; i++)
                {
                    var p = stratum[rng.Next(stratum.Length)];
                    sx += p.X;
                    sy += p.Y;
                }
            differences[r] = (sx - sy) / pairs.Count;
            if (sy == 0) ratioDefined = false;
            else ratios[r] = sx / sy;
        }
        Array.Sort(differences);
        var difference = new Interval(Quantile(differences, 0.025), Quantile(differences, 0.975));
        if (!ratioDefined) return (difference, Interval.None);
        Array.Sort(ratios);
        return (difference, new Interval(Quantile(ratios, 0.025), Quantile(ratios, 0.975)));
    }

    /// <summary>The q-quantile of sorted values by linear interpolation between the order statistics at
    /// (n − 1)·q (Hyndman and Fan's type 7, numpy's and R's default).</summary>
    public static double Quantile(IReadOnlyList<double> sorted, double q)
    {
        if (sorted.Count == 0) return double.NaN;
        double h = (sorted.Count - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
    }

    /// <summary>Exact two-sided McNemar test: of the b + c discordant pairs (b where the method alone scored, c
    /// where the reference alone did), under no difference each is b or c with probability ½, so the p-value is
    /// min(1, 2 · P(Bin(b + c, ½) ≤ min(b, c))). 1 when there is no discordant pair.</summary>
    public static double McNemarExactP(int b, int c)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(b);
        ArgumentOutOfRangeException.ThrowIfNegative(c);
        int n = b + c, k = Math.Min(b, c);
        if (n == 0) return 1;
        // P(X ≤ k) = Σ C(n, i) / 2^n, summed in log space so that large n does not underflow 2^−n
        double logHalfN = -n * Math.Log(2), logC = 0, tail = 0;
        for (int i = 0; i <= k; i++)
        {
            if (i > 0) logC += Math.Log(n - i + 1) - Math.Log(i);
            tail += Math.Exp(logC + logHalfN);
        }
        return Math.Min(1, 2 * tail);
    }

    /// <summary>Two-sided paired sign-flip permutation test of the mean difference: under no difference each pair's
    /// difference is as likely to have the other sign, so the p-value is the share of sign assignments to the
    /// non-zero differences whose |Σ| is at least the observed |Σ|. Exact (all 2^m assignments) for m ≤
    /// <see cref="ExactSignFlipLimit"/>; otherwise <see cref="Resamples"/> seeded random assignments, with the
    /// observed one counted in: p = (1 + hits) ÷ (1 + draws). For differences in {−1, 0, 1} (0/1 scores) this is
    /// the exact McNemar test, which <see cref="Test"/> uses there.</summary>
    public static double SignFlipP(IReadOnlyList<double> differences, int seed = DefaultSeed, int draws = Resamples)
    {
        var d = differences.Where(x => x != 0).ToArray();
        int m = d.Length;
        if (m == 0) return 1;
        double observed = Math.Abs(d.Sum());
        // sums that differ from the observed one by rounding only count as reaching it
        double tolerance = 1e-9 * d.Sum(Math.Abs);
        if (m <= ExactSignFlipLimit)
        {
            long hits = 0, total = 1L << m;
            for (long mask = 0; mask < total; mask++)
            {
                double s = 0;
                for (int i = 0; i < m; i++) s += (mask >> i & 1) == 0 ? d[i] : -d[i];
                if (Math.Abs(s) >= observed - tolerance) hits++;
            }
            return hits / (double)total;
        }
        var rng = new Random(seed);
        int reached = 0;
        for (int r = 0; r < draws; r++)
        {
            double s = 0;
            for (int i = 0; i < m; i++) s += rng.Next(2) == 0 ? d[i] : -d[i];
            if (Math.Abs(s) >= observed - tolerance) reached++;
        }
        return (1 + reached) / (1.0 + draws);
    }

    /// <summary>The paired test of the differences and its name: exact McNemar when every difference is −1, 0 or 1
    /// (0/1 scores), else the sign-flip permutation test.</summary>
    public static (string Test, double P) Test(IReadOnlyList<double> differences, int seed = DefaultSeed)
    {
        if (differences.All(x => x is -1 or 0 or 1))
            return (McNemarTest, McNemarExactP(differences.Count(x => x > 0), differences.Count(x => x < 0)));
        int m = differences.Count(x => x != 0);
        return (m <= ExactSignFlipLimit ? SignFlipTest : MonteCarloSignFlipTest, SignFlipP(differences, seed));
    }

    /// <summary>Pairs a paired design needs for a two-sided test at level `alpha` to detect a mean difference
    /// `delta` with probability `power`, given the second moment of the differences E[d²] (Connor 1987, Biometrics
    /// 43:207, for McNemar's test, where d ∈ {−1, 0, 1} and E[d²] is the discordance rate ψ):
    /// n = ⌈(z₁₋α/₂ √ψ + z₁₋β √(ψ − δ²))² ÷ δ²⌉. For fractional scores E[d²] takes ψ's place (the variance of d is
    /// E[d²] under no difference and E[d²] − δ² under δ). A ψ below δ² is raised to δ², the least second moment a
    /// mean difference of δ allows; for 0/1 scores the caller passes at least |δ|, the least discordance rate that
    /// allows it.</summary>
    public static int SampleSize(double secondMoment, double delta, double alpha = 0.05, double power = 0.8)
    {
        if (!(delta != 0 && double.IsFinite(delta))) throw new ArgumentOutOfRangeException(nameof(delta), "The difference to detect must be finite and not 0.");
        if (!(alpha is > 0 and < 1) || !(power is > 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(alpha), "alpha and power must lie in (0, 1).");
        if (!(secondMoment >= 0)) throw new ArgumentOutOfRangeException(nameof(secondMoment), "The second moment of the differences must be ≥ 0.");
        double d = Math.Abs(delta), psi = Math.Max(secondMoment, d * d);
        double za = NormalQuantile(1 - alpha / 2), zb = NormalQuantile(power);
        double root = za * Math.Sqrt(psi) + zb * Math.Sqrt(psi - d * d);
        // the small allowance keeps an exact integer (say 23.0000000001 from rounding) from becoming 24
        return (int)Math.Ceiling(root * root / (d * d) - 1e-9);
    }

    /// <summary>The standard normal quantile Φ⁻¹(p) for p in (0, 1): Wichura's AS 241 (PPND16), accurate to about
    /// 1e-16.</summary>
    public static double NormalQuantile(double p)
    {
        if (!(p is > 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(p), "p must lie in (0, 1).");
        double q = p - 0.5;
        if (Math.Abs(q) <= 0.425)
        {
            double r = 0.180625 - q * q;
            return q * (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r
                           + 45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r
                         + 133.14166789178437745) * r + 3.387132872796366608)
                   / (((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r
                          + 21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r
                        + 42.313330701600911252) * r + 1.0);
        }
        double s = Math.Sqrt(-Math.Log(q < 0 ? p : 1 - p));
        double x;
        if (s <= 5)
        {
            s -= 1.6;
            x = (((((((7.7454501427834140764e-4 * s + 0.0227238449892691845833) * s + 0.24178072517745061177) * s
                    + 1.27045825245236838258) * s + 3.64784832476320460504) * s + 5.7694972214606914055) * s
                  + 4.6303378461565452959) * s + 1.42343711074968357734)
                / (((((((1.05075007164441684324e-9 * s + 5.475938084995344946e-4) * s + 0.0151986665636164571966) * s
                       + 0.14810397642748007459) * s + 0.68976733498510000455) * s + 1.6763848301838038494) * s
                     + 2.05319162663775882187) * s + 1.0);
        }
        else
        {
            s -= 5;
            x = (((((((2.01033439929228813265e-7 * s + 2.71155556874348757815e-5) * s + 0.0012426609473880784386) * s
                    + 0.026532189526576123093) * s + 0.29656057182850489123) * s + 1.7848265399172913358) * s
                  + 5.4637849111641143699) * s + 6.6579046435011037772)
                / (((((((2.04426310338993978564e-15 * s + 1.4215117583164458887e-7) * s + 1.8463183175100546818e-5) * s
                       + 7.868691311456132591e-4) * s + 0.0148753612908506148525) * s + 0.13692988092273580531) * s
                     + 0.59983220655588793769) * s + 1.0);
        }
        return q < 0 ? -x : x;
    }
}
