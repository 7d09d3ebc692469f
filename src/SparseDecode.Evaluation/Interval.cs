namespace SparseDecode.Evaluation;

/// <summary>A 95% confidence interval [Low, High] around an estimate.</summary>
public readonly record struct Interval(double Low, double High)
{
    public static readonly Interval None = new(double.NaN, double.NaN);
    private const double Z = 1.959964;

    public bool IsFinite => double.IsFinite(Low) && double.IsFinite(High);

    /// <summary>Wilson score interval of a proportion p̂ from n trials. Task scores are 0/1 (exact match) or
    /// fractions of expected items; a fractional score counts as that share of a right answer, so n is the number
    /// of scored cells. Unlike p̂ ± 1.96·s.e. it stays inside [0, 1] and is not zero-width at 0% or 100%, which
    /// matters with 4 samples per task.</summary>
    public static Interval Wilson(double p, int n)
    {
        if (n <= 0 || !double.IsFinite(p)) return None;
        p = Math.Clamp(p, 0, 1);
        double z2 = Z * Z, denom = 1 + z2 / n;
        double centre = (p + z2 / (2 * n)) / denom;
        double half = Z * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / denom;
        return new(Math.Max(0, centre - half), Math.Min(1, centre + half));
    }

    /// <summary>Normal-approximation interval of a mean: x̄ ± 1.96 · s / √n (for continuous measures such as
    /// attention-mass recall).</summary>
    public static Interval OfMean(IReadOnlyList<double> xs)
    {
        if (xs.Count < 2) return None;
        double m = xs.Average();
        double se = Math.Sqrt(xs.Sum(x => (x - m) * (x - m)) / (xs.Count - 1) / xs.Count);
        return new(m - Z * se, m + Z * se);
    }
}
