using System.Globalization;

namespace SparseDecode.Selection;

/// <summary>How many keys a sparse method may attend to: a number of tokens ("256") or a share of the
/// context ("3%"). Resolved against the context length at each step.</summary>
public readonly record struct Budget(int Tokens, double Fraction)
{
    public static Budget OfTokens(int tokens) => new(tokens, 0);
    public static Budget OfFraction(double fraction) => new(0, fraction);

    public static Budget Parse(string text)
    {
        text = text.Trim();
        if (text.EndsWith('%'))
        {
            if (!double.TryParse(text[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out double pct) || pct <= 0 || pct > 100)
                throw new ArgumentException($"Budget '{text}' is not a percentage in (0, 100].");
            return OfFraction(pct / 100);
        }
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int tokens) || tokens <= 0)
            throw new ArgumentException($"Budget '{text}' is neither a positive number of tokens nor a percentage like 3%.");
        return OfTokens(tokens);
    }

    /// <summary>Keys kept for a context of n positions: at least 1, at most n.</summary>
    public int Resolve(int n) => Math.Clamp(Fraction > 0 ? (int)Math.Ceiling(Fraction * n) : Tokens, 1, n);

    public override string ToString() => Fraction > 0
        ? (Fraction * 100).ToString("0.###", CultureInfo.InvariantCulture) + "%"
        : Tokens.ToString(CultureInfo.InvariantCulture);
}
