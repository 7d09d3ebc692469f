using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace SparseDecode.Tokenization;

/// <summary>A tokenizer.json decoder: turns the token strings of a sequence into text pieces, which are then
/// concatenated. Works on the whole list, because some steps combine neighbours (bytes into characters).</summary>
internal interface IDecoder
{
    List<string> DecodeChain(List<string> tokens);

    /// <summary>Whether this decoder (or one inside it) joins consecutive &lt;0xNN&gt; tokens, so that a byte
    /// token can change how the previous byte tokens decode.</summary>
    bool UsesByteFallback => false;
}

internal static class Decoders
{
    public static IDecoder? Parse(JsonElement e, string where, JsonFields json)
    {
        if (JsonFields.IsNull(e)) return null;
        string type = json.TypeOf(e, where);
        switch (type)
        {
            case "Sequence":
            {
                var items = json.RequireArray(e, "decoders", where);
                var list = new IDecoder[items.GetArrayLength()];
                int i = 0;
                foreach (var item in items.EnumerateArray())
                {
                    string at = $"{where}.decoders[{i}]";
                    list[i++] = Parse(item, at, json) ?? throw json.Error($"{at} must not be null");
                }
                return new SequenceDecoder(list);
            }
            case "ByteLevel":
                return new ByteLevelDecoder();
            case "ByteFallback":
                return new ByteFallbackDecoder();
            case "Fuse":
                return new FuseDecoder();
            case "Replace":
                return new ReplaceDecoder(TextPattern.Parse(e, "pattern", where, json), json.RequireString(e, "content", where));
            case "Strip":
                return new StripDecoder(json.RequireCodePoint(e, "content", where),
                    json.RequireInt(e, "start", where), json.RequireInt(e, "stop", where));
            case "BPEDecoder":
                return new BpeSuffixDecoder(json.OptionalString(e, "suffix", where) ?? "</w>");
            case "Metaspace":
                return new MetaspaceDecoder(json.RequireCodePoint(e, "replacement", where), MetaspaceScheme.Parse(e, where, json));
            default:
                throw json.Error($"{where} has decoder type \"{type}\", which is not supported");
        }
    }
}

internal sealed class SequenceDecoder(IDecoder[] items) : IDecoder
{
    public List<string> DecodeChain(List<string> tokens)
    {
        foreach (var d in items) tokens = d.DecodeChain(tokens);
        return tokens;
    }

    public bool UsesByteFallback => items.Any(d => d.UsesByteFallback);
}

/// <summary>Maps byte-level characters back to bytes and decodes all of them as one UTF-8 string, replacing
/// invalid sequences with U+FFFD per maximal invalid subpart (as Rust's from_utf8_lossy and .NET both do).</summary>
internal sealed class ByteLevelDecoder : IDecoder
{
    public List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens) ByteLevelMapping.AppendBytes(t, bytes);
        return [Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes))];
    }
}

/// <summary>Turns runs of &lt;0xNN&gt; tokens into the text they encode; a run that is not valid UTF-8 becomes
/// one U+FFFD per byte.</summary>
internal sealed class ByteFallbackDecoder : IDecoder
{
    public bool UsesByteFallback => true;

    public List<string> DecodeChain(List<string> tokens)
    {
        var result = new List<string>(tokens.Count);
        var run = new List<byte>();
        foreach (var token in tokens)
        {
            if (TryParseByte(token, out byte b))
            {
                run.Add(b);
                continue;
            }
            FlushRun(run, result);
            result.Add(token);
        }
        FlushRun(run, result);
        return result;
    }

    static void FlushRun(List<byte> run, List<string> result)
    {
        if (run.Count == 0) return;
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(run);
        if (Utf8.IsValid(span)) result.Add(Encoding.UTF8.GetString(span));
        else for (int i = 0; i < run.Count; i++) result.Add("\uFFFD");
        run.Clear();
    }

    /// <summary>"&lt;0xNN&gt;": six bytes, parsed like Rust's u8::from_str_radix (which also takes "+F").</summary>
    public static bool TryParseByte(string token, out byte value)
    {
        value = 0;
        if (token.Length != 6 || !token.StartsWith("<0x", StringComparison.Ordinal) || token[5] != '>') return false;
        int hi = HexDigit(token[3]), lo = HexDigit(token[4]);
        if (token[3] == '+' && lo >= 0)
        {
            value = (byte)lo;
            return true;
        }
        if (hi < 0 || lo < 0) return false;
        value = (byte)(hi * 16 + lo);
        return true;
    }

    static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}

internal sealed class FuseDecoder : IDecoder
{
    public List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

internal sealed class ReplaceDecoder(TextPattern pattern, string content) : IDecoder
{
    public List<string> DecodeChain(List<string> tokens)
    {
        for (int i = 0; i < tokens.Count; i++) tokens[i] = pattern.ReplaceAll(tokens[i], content);
        return tokens;
    }
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing copies of one character from each token.</summary>
internal sealed class StripDecoder(string content, int start, int stop) : IDecoder
{
    public List<string> DecodeChain(List<string> tokens)
    {
        for (int i = 0; i < tokens.Count; i++) tokens[i] = Strip(tokens[i]);
        return tokens;
    }

    string Strip(string token)
    {
        int from = 0, to = token.Length;
        for (int k = 0; k < start && token.AsSpan(from, to - from).StartsWith(content, StringComparison.Ordinal); k++)
            from += content.Length;
        for (int k = 0; k < stop && token.AsSpan(from, to - from).EndsWith(content, StringComparison.Ordinal); k++)
            to -= content.Length;
        return from == 0 && to == token.Length ? token : token[from..to];
    }
}

/// <summary>Replacement characters become spaces, except that the first token drops them entirely unless the
/// prepend scheme is "never" (Hugging Face's rule, which undoes the prepended ▁).</summary>
internal sealed class MetaspaceDecoder(string replacement, PrependScheme scheme) : IDecoder
{
    public List<string> DecodeChain(List<string> tokens)
    {
        for (int i = 0; i < tokens.Count; i++)
            tokens[i] = tokens[i].Replace(replacement, i == 0 && scheme != PrependScheme.Never ? "" : " ", StringComparison.Ordinal);
        return tokens;
    }
}

/// <summary>Hugging Face's BPEDecoder: the end-of-word suffix becomes a space, except on the last token.</summary>
internal sealed class BpeSuffixDecoder(string suffix) : IDecoder
{
    public List<string> DecodeChain(List<string> tokens)
    {
        if (suffix.Length == 0) return tokens;
        for (int i = 0; i < tokens.Count; i++)
            tokens[i] = tokens[i].Replace(suffix, i == tokens.Count - 1 ? "" : " ", StringComparison.Ordinal);
        return tokens;
    }
}
