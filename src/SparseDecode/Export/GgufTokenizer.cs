using System.Text.Json;
using SparseDecode.Model;
using SparseDecode.Tokenization;

namespace SparseDecode.Export;

/// <summary>A byte-level BPE tokenizer.json as GGUF's tokenizer.ggml.* keys: llama.cpp's "gpt2" model with the
/// vocabulary in id order, each token's type (control for special added tokens), the merges in rank order, the
/// pre-tokenizer by llama.cpp's name for its split pattern, and the special token ids.</summary>
public static class GgufTokenizer
{
    /// <summary>Split patterns llama.cpp knows, by the name tokenizer.ggml.pre gives them.</summary>
    private static readonly Dictionary<string, string> KnownPreTokenizers = new(StringComparer.Ordinal)
    {
        // Llama 3's pattern (llama.cpp: "llama-bpe")
        [@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"] = "llama-bpe",
        // Qwen2's (llama.cpp: "qwen2")
        [@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"] = "qwen2",
    };

    // llama.cpp's token types
    private const int Normal = 1, Control = 3, UserDefined = 4, Unused = 5;

    public static void Add(GgufWriter gguf, string modelDir, ModelConfig config)
    {
        string path = Path.Combine(modelDir, "tokenizer.json");
        var tokenizer = Tokenizer.FromDirectory(modelDir); // validates the file as the engine reads it
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        var model = root.GetProperty("model");
        if (model.TryGetProperty("type", out var type) && type.GetString() != "BPE")
            throw new ModelFormatException($"{path}: only BPE tokenizers can be exported to GGUF, not {type.GetString()}.");
        string pre = PreTokenizerName(root, path);

        int n = config.VocabSize;
        var tokens = new string[n];
        var types = new int[n];
        for (int id = 0; id < n; id++)
        {
            string? text = tokenizer.IdToToken(id);
            // ids the embedding has but the tokenizer never produces: placeholders, as llama.cpp's converter writes
            tokens[id] = text ?? $"[PAD{id}]";
            types[id] = text is null ? Unused : tokenizer.IsSpecial(id) ? Control : IsAdded(root, id) ? UserDefined : Normal;
        }
        gguf.Add("tokenizer.ggml.model", "gpt2");
        gguf.Add("tokenizer.ggml.pre", pre);
        gguf.Add("tokenizer.ggml.tokens", tokens);
        gguf.Add("tokenizer.ggml.token_type", types);
        gguf.Add("tokenizer.ggml.merges", Merges(model));
        if (config.BosTokenId is int bos) gguf.Add("tokenizer.ggml.bos_token_id", (uint)bos);
        if (config.EosTokenIds.Count > 0) gguf.Add("tokenizer.ggml.eos_token_id", (uint)config.EosTokenIds[0]);
        if (tokenizer.TokenToId("<|pad|>") is int pad) gguf.Add("tokenizer.ggml.padding_token_id", (uint)pad);
        // the post-processor's template puts the BOS token first when it names it
        bool addsBos = root.TryGetProperty("post_processor", out var post) && post.ValueKind == JsonValueKind.Object
            && config.BosTokenId is int b && tokenizer.Encode("a").FirstOrDefault(-1) == b;
        gguf.Add("tokenizer.ggml.add_bos_token", addsBos);
        gguf.Add("tokenizer.ggml.add_eos_token", false);
        if (tokenizer.ChatTemplate is string template) gguf.Add("tokenizer.chat_template", template);
    }

    private static bool IsAdded(JsonElement root, int id) =>
        root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array
        && added.EnumerateArray().Any(t => t.TryGetProperty("id", out var i) && i.GetInt32() == id);

    /// <summary>Merges as "left right", in rank order (both of tokenizer.json's forms: strings and pairs).</summary>
    private static string[] Merges(JsonElement model)
    {
        if (!model.TryGetProperty("merges", out var merges) || merges.ValueKind != JsonValueKind.Array) return [];
        return merges.EnumerateArray().Select(m => m.ValueKind == JsonValueKind.Array
            ? $"{m[0].GetString()} {m[1].GetString()}"
            : m.GetString()!).ToArray();
    }

    /// <summary>The byte-level pre-tokenizer's split pattern, by llama.cpp's name for it.</summary>
    private static string PreTokenizerName(JsonElement root, string path)
    {
        string? pattern = null;
        bool byteLevel = false;
        void Visit(JsonElement e)
        {
            if (e.ValueKind != JsonValueKind.Object) return;
            string? t = e.TryGetProperty("type", out var tt) ? tt.GetString() : null;
            if (t == "Sequence" && e.TryGetProperty("pretokenizers", out var list))
                foreach (var p in list.EnumerateArray()) Visit(p);
            else if (t == "Split" && e.TryGetProperty("pattern", out var pat) && pat.TryGetProperty("Regex", out var rx))
                pattern = rx.GetString();
            else if (t == "ByteLevel") byteLevel = true;
        }
        if (root.TryGetProperty("pre_tokenizer", out var pre)) Visit(pre);
        if (!byteLevel) throw new ModelFormatException($"{path}: only byte-level BPE tokenizers can be exported to GGUF.");
        if (pattern is null) return "gpt-2"; // ByteLevel with its own regex is GPT-2's split
        return KnownPreTokenizers.TryGetValue(pattern, out var name) ? name
            : throw new ModelFormatException($"{path}: the pre-tokenizer's split pattern is not one llama.cpp knows (Llama 3's, Qwen2's or GPT-2's).");
    }
}
