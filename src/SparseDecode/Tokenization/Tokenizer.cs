namespace SparseDecode.Tokenization;

/// <summary>A Hugging Face tokenizer loaded from tokenizer.json, producing the same ids and text as the
/// `tokenizers` library for BPE models (byte-level GPT-2 / Llama-3 / Qwen2 style and SentencePiece-style
/// Llama-2 / Mistral). Immutable and safe to share between threads.</summary>
public sealed class Tokenizer
{
    readonly BpeModel _model;
    readonly INormalizer? _normalizer;
    readonly IPreTokenizer? _preTokenizer;
    readonly IPostProcessor? _postProcessor;
    readonly IDecoder? _decoder;
    /// <summary>Added tokens matched in the raw text, and those matched after normalization.</summary>
    readonly AddedTokenMatcher _rawMatcher, _normalizedMatcher;
    readonly Dictionary<string, int> _addedIds = new(StringComparer.Ordinal);
    readonly Dictionary<int, AddedToken> _addedById = new();
    /// <summary>The string an added token stands for when decoding: its normalized form when it has one.</summary>
    readonly Dictionary<int, string> _addedText = new();
    readonly HashSet<string> _specialContents = new(StringComparer.Ordinal);

    Tokenizer(TokenizerDefinition definition, TokenizerConfig config)
    {
        Path = definition.Path;
        _model = definition.Model;
        _normalizer = definition.Normalizer;
        _preTokenizer = definition.PreTokenizer;
        _postProcessor = definition.PostProcessor;
        _decoder = definition.Decoder;
        ChatTemplate = config.ChatTemplate;
        BosToken = config.BosToken;
        EosToken = config.EosToken;

        var raw = new List<(AddedToken, string)>();
        var normalized = new List<(AddedToken, string)>();
        int maxId = -1;
        foreach (var (content, id) in _model.Vocab)
            if (id > maxId) (maxId, _largestIdAt) = (id, $"model.vocab[{JsonFields.Quote(content)}]");
        int index = 0;
        foreach (var token in definition.AddedTokens)
        {
            if (token.Id > maxId) (maxId, _largestIdAt) = (token.Id, $"added_tokens[{index}] {JsonFields.Quote(token.Content)}");
            index++;
            _addedIds[token.Content] = token.Id;
            _addedById[token.Id] = token;
            if (token.Special) _specialContents.Add(token.Content);
            // Hugging Face matches a normalized token by its normalized form, and decodes it from that form too.
            string pattern = token.Normalized && _normalizer is not null ? _normalizer.Normalize(token.Content) : token.Content;
            _addedText[token.Id] = pattern;
            (token.Normalized ? normalized : raw).Add((token, pattern));
        }
        _rawMatcher = new AddedTokenMatcher(raw);
        _normalizedMatcher = new AddedTokenMatcher(normalized);
        VocabSize = maxId + 1;
        UsesByteFallback = _decoder?.UsesByteFallback ?? false;
        // A name the tokenizer lacks would never be found: generation would not stop at EOS, and a chat template
        // would put its text into the prompt as ordinary characters.
        var names = new JsonFields(config.Path ?? "tokenizer_config.json");
        foreach (var (field, name) in (ReadOnlySpan<(string, string?)>)[("bos_token", BosToken), ("eos_token", EosToken)])
            if (name is not null && TokenToId(name) is null)
                throw names.Error($"{field} {JsonFields.Quote(name)} is not a token of {Path}");
    }

    /// <summary>Where the largest id is given (for messages).</summary>
    readonly string _largestIdAt = "model.vocab";

    /// <summary>The tokenizer.json this tokenizer was read from.</summary>
    public string Path { get; }

    /// <summary>Loads a tokenizer.json; throws <see cref="TokenizerFormatException"/> when it is missing, malformed
    /// or uses something this implementation does not support.</summary>
    public static Tokenizer FromFile(string tokenizerJsonPath) =>
        new(TokenizerJson.Load(tokenizerJsonPath), TokenizerConfig.Empty);

    /// <summary>A tokenizer from tokenizer.json's bytes; `path` only names the file in messages.</summary>
    public static Tokenizer FromJson(ReadOnlyMemory<byte> json, string path) =>
        new(TokenizerJson.FromBytes(json, path), TokenizerConfig.Empty);

    /// <summary>Loads modelDir's tokenizer as <see cref="FromDirectory(string)"/> does and checks it against the model's
    /// config.json: a token id at or past vocab_size would fail at the first prompt that uses it, so it is refused
    /// here, naming the entry.</summary>
    public static Tokenizer FromDirectory(string modelDir, Model.ModelConfig config)
    {
        var tokenizer = FromDirectory(modelDir);
        tokenizer.CheckFits(config.VocabSize);
        return tokenizer;
    }

    /// <summary>Throws <see cref="TokenizerFormatException"/> when some token's id is not below `modelVocabSize`
    /// (config.json's vocab_size).</summary>
    public void CheckFits(int modelVocabSize)
    {
        if (VocabSize > modelVocabSize)
            throw new TokenizerFormatException($"{Path}: {_largestIdAt} is id {VocabSize - 1}, outside the model's vocabulary of {modelVocabSize} (config.json's vocab_size).");
    }

    /// <summary>Loads modelDir/tokenizer.json, plus tokenizer_config.json when present (begin and end of sequence
    /// token names, chat template; a chat_template.jinja file is used when the config has no template).</summary>
    public static Tokenizer FromDirectory(string modelDir)
    {
        var definition = TokenizerJson.Load(System.IO.Path.Combine(modelDir, "tokenizer.json"));
        string configPath = System.IO.Path.Combine(modelDir, "tokenizer_config.json");
        var config = File.Exists(configPath) ? TokenizerConfig.Load(configPath) : TokenizerConfig.Empty;
        string jinjaPath = System.IO.Path.Combine(modelDir, "chat_template.jinja");
        if (config.ChatTemplate is null && File.Exists(jinjaPath))
        {
            try
            {
                config = config with { ChatTemplate = File.ReadAllText(jinjaPath) };
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new TokenizerFormatException($"{jinjaPath}: cannot be read ({e.Message.TrimEnd('.')}).", e);
            }
        }
        return new Tokenizer(definition, config);
    }

    /// <summary>Largest id in the vocabulary or the added tokens, plus one.</summary>
    public int VocabSize { get; }

    public string? ChatTemplate { get; }

    public string? BosToken { get; }

    public string? EosToken { get; }

    internal bool UsesByteFallback { get; }

    /// <summary>Ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/> the post-processor's
    /// template (for example a leading &lt;s&gt;) is applied, as in Hugging Face.</summary>
    public int[] Encode(string text, bool addSpecialTokens = true) => Encode(text, addSpecialTokens, null);

    /// <summary>As <see cref="Encode(string, bool)"/>, refusing the text with <see cref="TokenizerTimeoutException"/>
    /// once encoding it has taken longer than <paramref name="timeLimit"/> (null: no limit besides each regex
    /// match's own), so that a slow tokenizer pattern cannot hold a core for long per text.</summary>
    public int[] Encode(string text, bool addSpecialTokens, TimeSpan? timeLimit)
    {
        ArgumentNullException.ThrowIfNull(text);
        using var deadline = CodePointRegex.StartDeadline(timeLimit);
        var ids = new List<int>(text.Length / 3 + 4);
        var rawSpans = new List<(int Start, int End, AddedToken? Token)>();
        var normalizedSpans = new List<(int Start, int End, AddedToken? Token)>();
        var pieces = new List<PreToken>(1);
        var preTokens = new List<PreToken>();

        _rawMatcher.Split(text, rawSpans);
        foreach (var (start, end, token) in rawSpans)
        {
            if (token is not null)
            {
                ids.Add(token.Id);
                continue;
            }
            if (end == start) continue;
            string segment = text.Substring(start, end - start);
            string normalized = _normalizer is null ? segment : _normalizer.Normalize(segment);
            normalizedSpans.Clear();
            _normalizedMatcher.Split(normalized, normalizedSpans);
            foreach (var (s, e, added) in normalizedSpans)
            {
                if (added is not null)
                {
                    ids.Add(added.Id);
                    continue;
                }
                if (e == s) continue;
                string part = s == 0 && e == normalized.Length ? normalized : normalized[s..e];
                if (_preTokenizer is null)
                {
                    _model.Tokenize(part, ids);
                    continue;
                }
                pieces.Clear();
                preTokens.Clear();
                pieces.Add(new PreToken(part, AtStart: start == 0 && s == 0));
                _preTokenizer.PreTokenize(pieces, preTokens);
                foreach (var p in preTokens) _model.Tokenize(p.Text, ids);
                CodePointRegex.CheckDeadline(text.Length);
            }
        }

        if (_postProcessor is null) return ids.ToArray();
        var output = new List<int>(ids.Count + 4);
        _postProcessor.Process(ids, addSpecialTokens, output);
        return output.ToArray();
    }

    /// <summary>The text of <paramref name="ids"/>. Unknown ids are ignored, as in Hugging Face.</summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>(ids.Length);
        foreach (int id in ids)
        {
            string? token = IdToToken(id);
            if (token is null || (skipSpecialTokens && _specialContents.Contains(token))) continue;
            tokens.Add(token);
        }
        if (_decoder is null) return string.Join(' ', tokens);
        return string.Concat(_decoder.DecodeChain(tokens));
    }

    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return _addedIds.TryGetValue(token, out int id) ? id : _model.TokenToId(token);
    }

    public string? IdToToken(int id) => _addedText.TryGetValue(id, out var text) ? text : _model.IdToToken(id);

    /// <summary>Whether the id is an added token marked special (skipped by skipSpecialTokens).</summary>
    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out var token) && token.Special;

    /// <summary>Whether decoding drops this id when special tokens are skipped (Hugging Face compares the token text).</summary>
    internal bool IsSkipped(int id, bool skipSpecialTokens)
    {
        string? token = IdToToken(id);
        return token is null || (skipSpecialTokens && _specialContents.Contains(token));
    }

    /// <summary>Whether the id is a &lt;0xNN&gt; byte-fallback token.</summary>
    internal bool IsByteToken(int id)
    {
        string? token = IdToToken(id);
        return token is not null && ByteFallbackDecoder.TryParseByte(token, out _);
    }

    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new(this, skipSpecialTokens);
}
