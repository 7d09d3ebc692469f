using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace SparseDecode.Tokenization;

/// <summary>A .NET regex that matches code points the way Oniguruma does. .NET regexes see UTF-16 code units,
/// so a character outside the BMP (an emoji, a CJK extension ideograph, a math letter) is two surrogates of
/// category Cs: \p{L} would not match 𝐀 and \p{N}{1,3} would count halves. Texts holding surrogate pairs are
/// therefore matched on a copy in which each pair is replaced by one BMP stand-in of the same Unicode general
/// category, and match positions are mapped back.</summary>
internal sealed class CodePointRegex
{
    /// <summary>Longest one match may take on the backtracking engine. A tokenizer file's pattern such as
    /// (a|aa)+(?!x) backtracks exponentially in the length of the text (43 characters: two minutes); the
    /// timeout turns that into a refusal of that text.</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    readonly Regex _regex;

    CodePointRegex(Regex regex) => _regex = regex;

    /// <summary>When the encode running on this thread must end (Stopwatch ticks), and its limit for messages. A
    /// legal pattern can be slow on every match without any one match timing out; checked between matches, the
    /// deadline bounds the whole text's work.</summary>
    [ThreadStatic] static long t_deadline;
    [ThreadStatic] static double t_limitSeconds;

    /// <summary>Sets this thread's encode deadline `limit` from now (null: none) until the result is disposed.</summary>
    internal static Deadline StartDeadline(TimeSpan? limit)
    {
        var previous = new Deadline(t_deadline, t_limitSeconds);
        t_deadline = limit is TimeSpan l ? Stopwatch.GetTimestamp() + (long)(l.TotalSeconds * Stopwatch.Frequency) : 0;
        t_limitSeconds = limit?.TotalSeconds ?? 0;
        return previous;
    }

    internal readonly record struct Deadline(long Ticks, double LimitSeconds) : IDisposable
    {
        public void Dispose() => (t_deadline, t_limitSeconds) = (Ticks, LimitSeconds);
    }

    /// <summary>Throws <see cref="TokenizerTimeoutException"/> once this thread's encode deadline has passed.</summary>
    internal static void CheckDeadline(int textLength)
    {
        if (t_deadline != 0 && Stopwatch.GetTimestamp() > t_deadline)
            throw new TokenizerTimeoutException($"Tokenizing a text of {textLength} characters took more than the limit of {t_limitSeconds:0.###} s (the tokenizer's patterns are slow on it); the text was refused.");
    }

    /// <summary>Compiles an Oniguruma pattern; throws <see cref="FormatException"/> or
    /// <see cref="ArgumentException"/> when it cannot be expressed in .NET.</summary>
    public static CodePointRegex FromOniguruma(string pattern) =>
        // Multiline: in Ruby syntax ^ and $ always match at line boundaries.
        new(Build(OnigTranslator.ToDotNet(pattern), RegexOptions.CultureInvariant | RegexOptions.Multiline));

    public static CodePointRegex FromDotNet(string pattern) => new(Build(pattern, RegexOptions.CultureInvariant));

    /// <summary>The non-backtracking engine (linear in the text, whatever the pattern) when the pattern has none of
    /// the constructs it lacks (lookarounds, backreferences, atomic groups); otherwise the compiled backtracking
    /// engine under <see cref="MatchTimeout"/>. Both report the same leftmost matches. Byte-level pre-tokenizers'
    /// patterns use a lookahead, so they stay on the backtracking engine.</summary>
    static Regex Build(string pattern, RegexOptions options)
    {
        try
        {
            return new Regex(pattern, options | RegexOptions.NonBacktracking, MatchTimeout);
        }
        catch (NotSupportedException)
        {
            return new Regex(pattern, options | RegexOptions.Compiled, MatchTimeout);
        }
    }

    /// <summary>Appends the (start, end) of every non-overlapping match, left to right. Throws
    /// <see cref="TokenizerTimeoutException"/> when a match outlasts <see cref="MatchTimeout"/>.</summary>
    public void FindMatches(string text, List<(int Start, int End)> matches)
    {
        try
        {
            Find(text, matches);
        }
        catch (RegexMatchTimeoutException)
        {
            throw new TokenizerTimeoutException($"The tokenizer's pattern {_regex} took more than {MatchTimeout.TotalSeconds:0} s on a text of {text.Length} characters (it backtracks catastrophically); the text was refused.");
        }
    }

    void Find(string text, List<(int Start, int End)> matches)
    {
        if (text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            foreach (var m in _regex.EnumerateMatches(text))
            {
                matches.Add((m.Index, m.Index + m.Length));
                CheckDeadline(text.Length);
            }
            return;
        }

        var mapped = new StringBuilder(text.Length);
        // original[k] = index in text of mapped char k; original[mapped.Length] = text.Length.
        var original = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            original.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                int cp = char.ConvertToUtf32(text[i], text[i + 1]);
                mapped.Append(StandIn(CharUnicodeInfo.GetUnicodeCategory(cp)));
                i++;
            }
            else
            {
                mapped.Append(text[i]);
            }
        }
        original.Add(text.Length);
        foreach (var m in _regex.EnumerateMatches(mapped.ToString()))
        {
            matches.Add((original[m.Index], original[m.Index + m.Length]));
            CheckDeadline(text.Length);
        }
    }

    /// <summary>A BMP character of the given category that tokenizer patterns do not name literally.</summary>
    static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\uA780',
        UnicodeCategory.LowercaseLetter => '\uA781',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\uA000',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.SpaceSeparator => '\u2000',
        UnicodeCategory.LineSeparator => '\u2028',
        UnicodeCategory.ParagraphSeparator => '\u2029',
        UnicodeCategory.Control => '\u0080',
        UnicodeCategory.Format => '\u2060',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u2E02',
        UnicodeCategory.FinalQuotePunctuation => '\u2E03',
        UnicodeCategory.OtherPunctuation => '\u2E2E',
        UnicodeCategory.MathSymbol => '\u2A00',
        UnicodeCategory.CurrencySymbol => '\u20A0',
        UnicodeCategory.ModifierSymbol => '\u02C2',
        UnicodeCategory.OtherSymbol => '\u2100',
        _ => '\u0378', // unassigned
    };
}
