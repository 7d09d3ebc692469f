using System.Runtime.InteropServices;

namespace SparseDecode.Tokenization;

/// <summary>Decodes ids one at a time as they are generated. The concatenation of everything returned by
/// <see cref="Push"/> and <see cref="Flush"/> equals <see cref="Tokenizer.Decode"/> of all the ids.
///
/// Like Hugging Face's DecodeStream, it decodes a short window: the ids since the previous emission plus the
/// ones before it as context (so that decoders acting on the first token, such as Strip or Metaspace, treat
/// the context and the new text alike), and emits what the window adds beyond its context. Text is held back
/// while it ends in U+FFFD (an incomplete UTF-8 character) and, with a ByteFallback decoder, while the last
/// token is a &lt;0xNN&gt; byte: a later byte can still turn the whole run into U+FFFD characters.</summary>
public sealed class StreamingDecoder
{
    readonly Tokenizer _tokenizer;
    readonly bool _skipSpecialTokens;
    readonly List<int> _ids = new();
    /// <summary>Decoded text of the context ids, _ids[0.._prefixIndex).</summary>
    string _prefix = "";
    int _prefixIndex;
    bool _inByteRun;

    internal StreamingDecoder(Tokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one id; returns the text that is now final (often empty).</summary>
    public string Push(int id)
    {
        _ids.Add(id);
        if (_tokenizer.UsesByteFallback && !_tokenizer.IsSkipped(id, _skipSpecialTokens))
            _inByteRun = _tokenizer.IsByteToken(id);
        if (_inByteRun) return "";

        string text = Decode();
        if (text.Length <= _prefix.Length || text[^1] == '\uFFFD' || !text.StartsWith(_prefix, StringComparison.Ordinal))
            return "";
        string emitted = text[_prefix.Length..];
        // The new ids become the context of the next window.
        int newPrefixIndex = _ids.Count - _prefixIndex;
        _ids.RemoveRange(0, _prefixIndex);
        _prefixIndex = newPrefixIndex;
        _prefix = Decode();
        return emitted;
    }

    /// <summary>Returns whatever is still held back (such as an incomplete character, decoded as U+FFFD) and
    /// starts over, so the decoder can be reused for a new sequence.</summary>
    public string Flush()
    {
        string text = Decode();
        string rest = text.StartsWith(_prefix, StringComparison.Ordinal) ? text[_prefix.Length..] : "";
        _ids.Clear();
        _prefix = "";
        _prefixIndex = 0;
        _inByteRun = false;
        return rest;
    }

    string Decode() => _tokenizer.Decode(CollectionsMarshal.AsSpan(_ids), _skipSpecialTokens);
}
