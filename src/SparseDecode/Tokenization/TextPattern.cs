using System.Text;
using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>The {"String": ...} or {"Regex": ...} pattern of Split, Replace and their decoders.</summary>
internal sealed class TextPattern
{
    readonly string? _literal;
    readonly CodePointRegex? _regex;

    TextPattern(string? literal, CodePointRegex? regex)
    {
        _literal = literal;
        _regex = regex;
    }

    public static TextPattern Literal(string s) => new(s, null);

    public static TextPattern FromRegex(CodePointRegex regex) => new(null, regex);

    public static TextPattern Parse(JsonElement obj, string name, string where, JsonFields json)
    {
        var p = JsonFields.Get(obj, name);
        json.RequireObject(p, $"{where}.{name}");
        if (p.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String)
        {
            string literal = s.GetString()!;
            if (literal.Length == 0) throw json.Error($"{where}.{name} is an empty string, which matches nothing useful");
            return new TextPattern(literal, null);
        }
        if (p.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String)
        {
            string pattern = r.GetString()!;
            try
            {
                return new TextPattern(null, CodePointRegex.FromOniguruma(pattern));
            }
            catch (Exception e) when (e is FormatException or ArgumentException)
            {
                throw json.Error($"{where}.{name} regex {JsonFields.Quote(pattern)} cannot be used ({e.Message.TrimEnd('.')})");
            }
        }
        throw json.Error($"{where}.{name} must be {{\"String\": ...}} or {{\"Regex\": ...}}");
    }

    /// <summary>Non-overlapping matches, leftmost first.</summary>
    public void FindMatches(string text, List<(int Start, int End)> matches)
    {
        if (_regex is not null)
        {
            _regex.FindMatches(text, matches);
            return;
        }
        int at = 0;
        while (at <= text.Length - _literal!.Length)
        {
            int found = text.IndexOf(_literal, at, StringComparison.Ordinal);
            if (found < 0) break;
            matches.Add((found, found + _literal.Length));
            at = found + _literal.Length;
        }
    }

    /// <summary>Every match replaced by <paramref name="content"/> (taken literally, no $ substitutions).</summary>
    public string ReplaceAll(string text, string content)
    {
        if (_literal is not null) return text.Replace(_literal, content, StringComparison.Ordinal);
        var matches = new List<(int Start, int End)>();
        _regex!.FindMatches(text, matches);
        if (matches.Count == 0) return text;
        var sb = new StringBuilder(text.Length);
        int prev = 0;
        foreach (var (start, end) in matches)
        {
            sb.Append(text, prev, start - prev).Append(content);
            prev = end;
        }
        return sb.Append(text, prev, text.Length - prev).ToString();
    }
}
