using System.Text.Json;
using System.Text.Unicode;

namespace SparseDecode;

/// <summary>JsonDocument accepts well-formed JSON whose strings hold invalid UTF-8 bytes or escape a lone surrogate
/// ("\ud800"); reading such a string later throws InvalidOperationException deep inside a parser. One pass over
/// every string and property name finds them first, so that each reader can refuse the input with one sentence.</summary>
public static class JsonText
{
    /// <summary>Null when every string of the (well-formed) document is valid Unicode; otherwise the top-level
    /// property the first bad string is in or under ("" when it is not under one).</summary>
    public static string? FirstInvalid(ReadOnlySpan<byte> json, int maxDepth)
    {
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = maxDepth });
        string property = "";
        while (reader.Read())
        {
            if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.PropertyName)) continue;
            bool topLevelName = reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1;
            if (!reader.ValueIsEscaped && !reader.HasValueSequence)
            {
                if (!Utf8.IsValid(reader.ValueSpan)) return property;
                if (topLevelName) property = reader.GetString()!;
                continue;
            }
            string? text;
            try
            {
                text = reader.GetString();
            }
            catch (InvalidOperationException)
            {
                return property;
            }
            if (text is null || HasLoneSurrogate(text)) return property;
            if (topLevelName) property = text;
        }
        return null;
    }

    public static bool HasLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (!char.IsSurrogate(s[i])) continue;
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
            else return true;
        }
        return false;
    }

    /// <summary>" (under 'name')" for a message, or "" at the top level.</summary>
    public static string Where(string property) => property.Length == 0 ? "" : $" (under '{property}')";
}
