using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>Typed, validating access to the fields of a tokenizer JSON file. Every failure becomes a
/// <see cref="TokenizerFormatException"/> naming the file and the JSON location, so a bad file is diagnosed in
/// one sentence instead of surfacing later as a wrong encoding.</summary>
internal sealed class JsonFields(string path)
{
    public string Path => path;

    public TokenizerFormatException Error(string problem) => new($"{path}: {problem}.");

    /// <summary>A string as a JSON literal, for messages: non-ASCII text stays readable; quotes, backslashes,
    /// control characters and lone surrogates are escaped.</summary>
    public static string Quote(string s)
    {
        var sb = new System.Text.StringBuilder(s.Length + 2).Append('"');
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            bool pair = char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]);
            if (pair) sb.Append(c).Append(s[++i]);
            else if (c == '"' || c == '\\') sb.Append('\\').Append(c);
            else if (c < ' ' || char.IsSurrogate(c) || c is '\u0085' or '\u2028' or '\u2029') sb.Append($"\\u{(int)c:X4}");
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }

    public static bool IsNull(JsonElement e) => e.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined;

    /// <summary>The member, or default when it is absent (null JSON values are returned as they are).</summary>
    public static JsonElement Get(JsonElement obj, string name) =>
        obj.TryGetProperty(name, out var v) ? v : default;

    public void RequireObject(JsonElement e, string where)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Error($"{where} must be a JSON object");
    }

    public JsonElement RequireArray(JsonElement obj, string name, string where)
    {
        var v = Get(obj, name);
        if (v.ValueKind != JsonValueKind.Array) throw Error($"{where}.{name} must be an array");
        return v;
    }

    public string RequireString(JsonElement obj, string name, string where)
    {
        var v = Get(obj, name);
        if (v.ValueKind != JsonValueKind.String) throw Error($"{where}.{name} must be a string");
        return v.GetString()!;
    }

    public string? OptionalString(JsonElement obj, string name, string where)
    {
        var v = Get(obj, name);
        if (IsNull(v)) return null;
        if (v.ValueKind != JsonValueKind.String) throw Error($"{where}.{name} must be a string or null");
        return v.GetString()!;
    }

    public bool OptionalBool(JsonElement obj, string name, string where, bool defaultValue)
    {
        var v = Get(obj, name);
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Null or JsonValueKind.Undefined => defaultValue,
            _ => throw Error($"{where}.{name} must be true or false"),
        };
    }

    public int RequireInt(JsonElement obj, string name, string where, int min = 0)
    {
        var v = Get(obj, name);
        return AsInt(v, $"{where}.{name}", min);
    }

    public int OptionalInt(JsonElement obj, string name, string where, int defaultValue, int min = 0)
    {
        var v = Get(obj, name);
        return IsNull(v) ? defaultValue : AsInt(v, $"{where}.{name}", min);
    }

    public int AsInt(JsonElement v, string where, int min = 0, int max = int.MaxValue)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int value) || value < min)
            throw Error($"{where} must be an integer of at least {min}");
        if (value > max) throw Error($"{where} is {value}, above the largest this engine accepts ({max})");
        return value;
    }

    /// <summary>A single character (one Unicode code point), as Hugging Face stores `char` fields.</summary>
    public string RequireCodePoint(JsonElement obj, string name, string where)
    {
        string s = RequireString(obj, name, where);
        var e = s.EnumerateRunes();
        if (!e.MoveNext() || e.MoveNext()) throw Error($"{where}.{name} must be exactly one character, not \"{s}\"");
        return s;
    }

    /// <summary>The "type" tag of a component object.</summary>
    public string TypeOf(JsonElement obj, string where)
    {
        RequireObject(obj, where);
        return RequireString(obj, "type", where);
    }
}
