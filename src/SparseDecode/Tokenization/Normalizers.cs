using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>A tokenizer.json normalizer: rewrites each stretch of text between added tokens before pre-tokenization.</summary>
internal interface INormalizer
{
    string Normalize(string text);
}

internal static class Normalizers
{
    public static INormalizer? Parse(JsonElement e, string where, JsonFields json)
    {
        if (JsonFields.IsNull(e)) return null;
        string type = json.TypeOf(e, where);
        switch (type)
        {
            case "Sequence":
            {
                var items = json.RequireArray(e, "normalizers", where);
                var list = new INormalizer[items.GetArrayLength()];
                int i = 0;
                foreach (var item in items.EnumerateArray())
                {
                    string at = $"{where}.normalizers[{i}]";
                    list[i++] = Parse(item, at, json) ?? throw json.Error($"{at} must not be null");
                }
                return new SequenceNormalizer(list);
            }
            case "Prepend":
                return new PrependNormalizer(json.RequireString(e, "prepend", where));
            case "Replace":
                return new ReplaceNormalizer(TextPattern.Parse(e, "pattern", where, json), json.RequireString(e, "content", where));
            case "Strip":
                return new StripNormalizer(json.OptionalBool(e, "strip_left", where, true), json.OptionalBool(e, "strip_right", where, true));
            case "NFC" or "NFD" or "NFKC" or "NFKD":
                return new UnicodeFormNormalizer(compose: type is "NFC" or "NFKC", compatibility: type is "NFKC" or "NFKD");
            default:
                throw json.Error($"{where} has normalizer type \"{type}\", which is not supported");
        }
    }
}

internal sealed class SequenceNormalizer(INormalizer[] items) : INormalizer
{
    public string Normalize(string text)
    {
        foreach (var n in items) text = n.Normalize(text);
        return text;
    }
}

/// <summary>SentencePiece's dummy prefix ("▁"), added only to non-empty text as Hugging Face does.</summary>
internal sealed class PrependNormalizer(string prefix) : INormalizer
{
    public string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class ReplaceNormalizer(TextPattern pattern, string content) : INormalizer
{
    public string Normalize(string text) => pattern.ReplaceAll(text, content);
}

/// <summary>Removes leading and/or trailing whitespace (Unicode White_Space, like Rust's char::is_whitespace).</summary>
internal sealed class StripNormalizer(bool left, bool right) : INormalizer
{
    public string Normalize(string text)
    {
        int start = 0, end = text.Length;
        if (left) while (start < end && char.IsWhiteSpace(text[start])) start++;
        if (right) while (end > start && char.IsWhiteSpace(text[end - 1])) end--;
        return start == 0 && end == text.Length ? text : text[start..end];
    }
}

/// <summary>NFC, NFD, NFKC or NFKD, from the engine's own Unicode tables.</summary>
internal sealed class UnicodeFormNormalizer(bool compose, bool compatibility) : INormalizer
{
    public string Normalize(string text) => UnicodeNormalizer.Normalize(text, compose, compatibility);
}
