using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>The validated components of a Hugging Face tokenizer.json.</summary>
internal sealed record TokenizerDefinition(
    string Path,
    BpeModel Model,
    IReadOnlyList<AddedToken> AddedTokens,
    INormalizer? Normalizer,
    IPreTokenizer? PreTokenizer,
    IPostProcessor? PostProcessor,
    IDecoder? Decoder);

internal static class TokenizerJson
{
    public static TokenizerDefinition Load(string path)
    {
        if (!File.Exists(path)) throw new TokenizerFormatException($"{path}: file not found.");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException($"{path}: cannot be read ({e.Message.TrimEnd('.')}).", e);
        }
        return FromBytes(bytes, path);
    }

    public static TokenizerDefinition FromBytes(ReadOnlyMemory<byte> bytes, string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = false, MaxDepth = 256 });
            if (JsonText.FirstInvalid(bytes.Span, 256) is string at)
                throw new TokenizerFormatException($"{path}: holds a string that is not valid UTF-8 or has a lone surrogate{JsonText.Where(at)}.");
            return Parse(doc.RootElement, new JsonFields(path));
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"{path}: not valid JSON ({e.Message.TrimEnd('.')}).", e);
        }
    }

    public static TokenizerDefinition Parse(JsonElement root, JsonFields json)
    {
        json.RequireObject(root, "the top level");
        string? version = json.OptionalString(root, "version", "the top level");
        if (version is not null && version != "1.0")
            throw json.Error($"version is \"{version}\", but only tokenizer.json version 1.0 is supported");

        var modelJson = JsonFields.Get(root, "model");
        if (JsonFields.IsNull(modelJson)) throw json.Error("the \"model\" section is missing");
        var model = BpeModel.Parse(modelJson, "model", json);

        var normalizer = Normalizers.Parse(JsonFields.Get(root, "normalizer"), "normalizer", json);
        var preTokenizer = PreTokenizers.Parse(JsonFields.Get(root, "pre_tokenizer"), "pre_tokenizer", json);
        var postProcessor = PostProcessors.Parse(JsonFields.Get(root, "post_processor"), "post_processor", json);
        var decoder = Decoders.Parse(JsonFields.Get(root, "decoder"), "decoder", json);
        var added = ParseAddedTokens(JsonFields.Get(root, "added_tokens"), model, json);
        if (postProcessor is not null)
        {
            // A template id no token has would reach the model as an id with no text, or past its embedding table.
            int count = Math.Max(model.Vocab.Values.Max(), added.Count == 0 ? -1 : added.Max(t => t.Id)) + 1;
            foreach (var (where, id) in postProcessor.SpecialIds)
                if (id >= count)
                    throw json.Error($"{where} is id {id}, outside the vocabulary of {count} tokens");
        }
        // "truncation" and "padding" are per-call settings (transformers overrides them on every call), so they
        // are not applied here.
        return new TokenizerDefinition(json.Path, model, added, normalizer, preTokenizer, postProcessor, decoder);
    }

    static List<AddedToken> ParseAddedTokens(JsonElement array, BpeModel model, JsonFields json)
    {
        var list = new List<AddedToken>();
        if (JsonFields.IsNull(array)) return list;
        if (array.ValueKind != JsonValueKind.Array) throw json.Error("added_tokens must be an array");
        // Hugging Face does not take the ids in the file: it re-adds the tokens in order, reusing the id of content
        // already in the vocabulary and numbering the rest from the vocabulary's size. Files it wrote agree with
        // that; for any other file this reproduces what it actually encodes.
        var byContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        int nextId = model.Vocab.Count;
        int i = 0;
        foreach (var t in array.EnumerateArray())
        {
            string at = $"added_tokens[{i++}]";
            json.RequireObject(t, at);
            json.RequireInt(t, "id", at);
            string content = json.RequireString(t, "content", at);
            if (content.Length == 0) continue; // Hugging Face ignores empty added tokens.
            bool special = json.OptionalBool(t, "special", at, false);
            int id = byContent.TryGetValue(content, out var earlier) ? earlier.Id : model.TokenToId(content) ?? nextId++;
            var token = new AddedToken(id, content,
                json.OptionalBool(t, "single_word", at, false),
                json.OptionalBool(t, "lstrip", at, false),
                json.OptionalBool(t, "rstrip", at, false),
                json.OptionalBool(t, "normalized", at, !special),
                special);
            if (earlier is not null)
            {
                // The same content again replaces the earlier entry's flags.
                list.Remove(earlier);
            }
            byContent[content] = token;
            list.Add(token);
        }
        return list;
    }
}
