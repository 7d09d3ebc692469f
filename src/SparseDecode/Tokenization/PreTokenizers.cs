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
            default:
                throw json.Error($"{where} has pre_tokenizer type \"{type}\", which is not supported");
        }
    }

    /// <summary>Splits <paramref name="piece"/> at the matches of <paramref name="pattern"/> and appends the kept
    /// pieces; only the first can still begin at the original start.</summary>
    public static void SplitPiece(PreToken piece, TextPattern pattern, SplitBehavior behavior, bool invert, List<PreToken> output)
    {
        var matches = new List<(int, int)>();
        pattern.FindMatches(piece.Text, matches);
        var spans = new List<(int, int, bool)>(matches.Count * 2 + 1);
        Splitter.Cover(matches, piece.Text.Length, invert, spans);
        var kept = new List<(int Start, int End)>(spans.Count);
        Splitter.Apply(spans, behavior, kept);
        foreach (var (start, end) in kept)
            if (end > start) output.Add(new PreToken(piece.Text[start..end], piece.AtStart && start == 0));
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
