using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>One piece of text on its way to the model. <see cref="AtStart"/> says whether it begins at offset 0
/// of the original input, which Metaspace's prepend_scheme "first" needs.</summary>
internal readonly record struct PreToken(string Text, bool AtStart);

/// <summary>A tokenizer.json pre-tokenizer: splits (and may rewrite) pieces of normalized text.</summary>
internal interface IPreTokenizer
{
    /// <summary>Reads <paramref name="input"/> and appends the resulting non-empty pieces to <paramref name="output"/>.</summary>
    void PreTokenize(List<PreToken> input, List<PreToken> output);
}

internal static class PreTokenizers
{
    public static IPreTokenizer? Parse(JsonElement e, string where, JsonFields json)
    {
        if (JsonFields.IsNull(e)) return null;
        string type = json.TypeOf(e, where);
        switch (type)
        {
            case "Sequence":
            {
                var items = json.RequireArray(e, "pretokenizers", where);
                var list = new IPreTokenizer[items.GetArrayLength()];
                int i = 0;
                foreach (var item in items.EnumerateArray())
                {
                    string at = $"{where}.pretokenizers[{i}]";
                    list[i++] = Parse(item, at, json) ?? throw json.Error($"{at} must not be null");
                }
                return new SequencePreTokenizer(list);
            }
            case "ByteLevel":
                return new ByteLevelPreTokenizer(json.OptionalBool(e, "add_prefix_space", where, true), json.OptionalBool(e, "use_regex", where, true));
            case "Split":
                return new SplitPreTokenizer(TextPattern.Parse(e, "pattern", where, json),
                    Splitter.Parse(json.RequireString(e, "behavior", where), json, where),
                    json.OptionalBool(e, "invert", where, false));
            case "Metaspace":
                return new MetaspacePreTokenizer(json.RequireCodePoint(e, "replacement", where), MetaspaceScheme.Parse(e, where, json),
                    json.OptionalBool(e, "split", where, true));
            case "Digits":
                return new CharSplitPreTokenizer(IsNumeric,
                    json.OptionalBool(e, "individual_digits", where, false) ? SplitBehavior.Isolated : SplitBehavior.Contiguous);
            case "WhitespaceSplit":
                return new CharSplitPreTokenizer(Rune.IsWhiteSpace, SplitBehavior.Removed);
            case "Punctuation":
            {
                string? behavior = json.OptionalString(e, "behavior", where);
                return new CharSplitPreTokenizer(IsPunctuation, behavior is null ? SplitBehavior.Isolated : Splitter.Parse(behavior, json, where));
            }
            default:
                throw json.Error($"{where} has pre_tokenizer type \"{type}\", which is not supported");
        }
    }

    /// <summary>Rust's char::is_numeric: general categories Nd, Nl and No.</summary>
    static bool IsNumeric(Rune r) => Rune.GetUnicodeCategory(r) is UnicodeCategory.DecimalDigitNumber
        or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;

    /// <summary>Hugging Face's is_punc: ASCII punctuation (which includes symbols such as $ + &lt; = &gt; ^ ` | ~)
    /// or any Unicode punctuation category.</summary>
    static bool IsPunctuation(Rune r) => (r.IsAscii && char.IsAsciiLetterOrDigit((char)r.Value) is false && r.Value > 0x20 && r.Value < 0x7F)
        || Rune.GetUnicodeCategory(r) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;

    /// <summary>Splits <paramref name="piece"/> at the matches of <paramref name="pattern"/> and appends the kept
    /// pieces; only the first can still begin at the original start.</summary>
    public static void SplitPiece(PreToken piece, TextPattern pattern, SplitBehavior behavior, bool invert, List<PreToken> output)
    {
        var matches = new List<(int, int)>();
        pattern.FindMatches(piece.Text, matches);
        SplitPiece(piece, matches, behavior, invert, output);
    }

    /// <summary>Splits at every character (code point) that satisfies <paramref name="isDelimiter"/>.</summary>
    public static void SplitPiece(PreToken piece, Func<Rune, bool> isDelimiter, SplitBehavior behavior, List<PreToken> output)
    {
        var matches = new List<(int, int)>();
        string text = piece.Text;
        for (int i = 0; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out var rune, out int length);
            if (isDelimiter(rune)) matches.Add((i, i + length));
            i += length;
        }
        SplitPiece(piece, matches, behavior, invert: false, output);
    }

    static void SplitPiece(PreToken piece, List<(int, int)> matches, SplitBehavior behavior, bool invert, List<PreToken> output)
    {
        var spans = new List<(int, int, bool)>(matches.Count * 2 + 1);
        Splitter.Cover(matches, piece.Text.Length, invert, spans);
        var kept = new List<(int Start, int End)>(spans.Count);
        Splitter.Apply(spans, behavior, kept);
        foreach (var (start, end) in kept)
            if (end > start) output.Add(new PreToken(piece.Text[start..end], piece.AtStart && start == 0));
    }
}

/// <summary>Splits at single characters of a class: Digits, WhitespaceSplit and Punctuation.</summary>
internal sealed class CharSplitPreTokenizer(Func<Rune, bool> isDelimiter, SplitBehavior behavior) : IPreTokenizer
{
    public void PreTokenize(List<PreToken> input, List<PreToken> output)
    {
        foreach (var piece in input) PreTokenizers.SplitPiece(piece, isDelimiter, behavior, output);
    }
}

internal sealed class SequencePreTokenizer(IPreTokenizer[] items) : IPreTokenizer
{
    public void PreTokenize(List<PreToken> input, List<PreToken> output)
    {
        var current = input;
        for (int i = 0; i < items.Length; i++)
        {
            var next = i == items.Length - 1 ? output : new List<PreToken>(current.Count * 2);
            items[i].PreTokenize(current, next);
            current = next;
        }
        if (items.Length == 0) output.AddRange(input);
    }
}

/// <summary>GPT-2's pre-tokenizer: optional leading space, optional built-in split regex, then every UTF-8 byte
/// becomes its printable stand-in character.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : IPreTokenizer
{
    static readonly TextPattern Gpt2Split = TextPattern.FromRegex(
        CodePointRegex.FromDotNet(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"));

    public void PreTokenize(List<PreToken> input, List<PreToken> output)
    {
        List<PreToken>? split = useRegex ? new List<PreToken>() : null;
        foreach (var piece in input)
        {
            var p = addPrefixSpace && !piece.Text.StartsWith(' ') ? piece with { Text = " " + piece.Text } : piece;
            if (split is null)
            {
                if (p.Text.Length > 0) output.Add(p with { Text = ByteLevelMapping.Encode(p.Text) });
                continue;
            }
            split.Clear();
            PreTokenizers.SplitPiece(p, Gpt2Split, SplitBehavior.Isolated, invert: false, split);
            foreach (var s in split) output.Add(s with { Text = ByteLevelMapping.Encode(s.Text) });
        }
    }
}

internal sealed class SplitPreTokenizer(TextPattern pattern, SplitBehavior behavior, bool invert) : IPreTokenizer
{
    public void PreTokenize(List<PreToken> input, List<PreToken> output)
    {
        foreach (var piece in input) PreTokenizers.SplitPiece(piece, pattern, behavior, invert, output);
    }
}

internal enum PrependScheme { First, Never, Always }

internal static class MetaspaceScheme
{
    /// <summary>prepend_scheme, defaulting to "always"; the legacy add_prefix_space=false means "never".</summary>
    public static PrependScheme Parse(JsonElement e, string where, JsonFields json)
    {
        string? name = json.OptionalString(e, "prepend_scheme", where);
        var scheme = name switch
        {
            null or "always" => PrependScheme.Always,
            "first" => PrependScheme.First,
            "never" => PrependScheme.Never,
            _ => throw json.Error($"{where}.prepend_scheme \"{name}\" is not one of first, never, always"),
        };
        var legacy = JsonFields.Get(e, "add_prefix_space");
        if (legacy.ValueKind == JsonValueKind.False)
        {
            if (name is not null && scheme != PrependScheme.Never)
                throw json.Error($"{where}.add_prefix_space is false but prepend_scheme is \"{name}\"");
            scheme = PrependScheme.Never;
        }
        return scheme;
    }
}

/// <summary>SentencePiece's whitespace handling: spaces become the replacement character (▁), one is
/// prepended per the scheme, and the text is split before each replacement character.</summary>
internal sealed class MetaspacePreTokenizer(string replacement, PrependScheme scheme, bool split) : IPreTokenizer
{
    readonly TextPattern _delimiter = TextPattern.Literal(replacement);

    public void PreTokenize(List<PreToken> input, List<PreToken> output)
    {
        foreach (var piece in input)
        {
            string text = piece.Text.Replace(" ", replacement, StringComparison.Ordinal);
            bool prepend = scheme switch
            {
                PrependScheme.Always => !text.StartsWith(replacement, StringComparison.Ordinal),
                PrependScheme.First => !text.StartsWith(replacement, StringComparison.Ordinal) && piece.AtStart,
                _ => false,
            };
            if (prepend) text = replacement + text;
            var p = piece with { Text = text };
            if (split) PreTokenizers.SplitPiece(p, _delimiter, SplitBehavior.MergedWithNext, invert: false, output);
            else if (text.Length > 0) output.Add(p);
        }
    }
}
