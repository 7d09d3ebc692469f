using System.Globalization;

namespace SparseDecode.Selection;

/// <summary>How speculative decoding drafts: `Draft` tokens per verification pass, fixed, or (Adaptive) starting
/// there and moved by the acceptance: one more after a pass that kept every draft token, one fewer after a
/// rejection, within [1, <see cref="MaxDraft"/>].</summary>
public sealed record SpeculationOptions(int Draft = 4, bool Adaptive = false)
{
    public const int MaxDraft = 16;

    public void Validate()
    {
        if (Draft < 1 || Draft > MaxDraft)
            throw new ArgumentException($"Speculative decoding drafts 1 to {MaxDraft} tokens per pass, not {Draft}.");
    }

    /// <summary>"auto" (adaptive from 4) or a number of draft tokens from 1 to 16.</summary>
    public static SpeculationOptions Parse(string text)
    {
        if (text.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase)) return new SpeculationOptions(4, Adaptive: true);
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int k))
            throw new ArgumentException($"The draft length must be a number of tokens from 1 to {MaxDraft} or 'auto', not '{text}'.");
        var options = new SpeculationOptions(k);
        options.Validate();
        return options;
    }

    public override string ToString() => Adaptive ? "auto" : Draft.ToString(CultureInfo.InvariantCulture);
}
