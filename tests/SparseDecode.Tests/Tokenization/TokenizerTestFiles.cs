using System.Text.Json.Nodes;
using SparseDecode.Tokenization;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Small hand-made tokenizer.json files whose encodings can be worked out by hand, written to a
/// scratch directory that is removed on dispose.</summary>
public sealed class TokenizerTestFiles : IDisposable
{
    public string Dir { get; } = Path.Combine(Path.GetTempPath(), "sparsedecode-tok-" + Guid.NewGuid().ToString("N"));

    public TokenizerTestFiles() => Directory.CreateDirectory(Dir);

    public string Write(string name, string content)
    {
        string path = Path.Combine(Dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        return path;
    }

    public Tokenizer Load(JsonNode json, string name = "tokenizer.json") => Tokenizer.FromFile(Write(name, json.ToJsonString()));

    public void Dispose()
    {
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }

    static JsonObject Added(int id, string content, bool special = true, bool lstrip = false, bool rstrip = false,
        bool singleWord = false, bool normalized = false) => new()
    {
        ["id"] = id, ["content"] = content, ["single_word"] = singleWord, ["lstrip"] = lstrip, ["rstrip"] = rstrip,
        ["normalized"] = normalized, ["special"] = special,
    };

    /// <summary>Llama-2 style: ▁ for spaces, byte fallback, &lt;s&gt; prepended. Ids: &lt;unk&gt; 0, &lt;s&gt; 1,
    /// &lt;/s&gt; 2, &lt;0xNN&gt; 3 + NN, then ▁ 259, a 260, b 261, c 262, ab 263, ▁ab 264, abc 265.</summary>
    public static JsonObject SentencePiece(JsonArray? merges = null)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        string[] pieces = ["▁", "a", "b", "c", "ab", "▁ab", "abc"];
        for (int i = 0; i < pieces.Length; i++) vocab[pieces[i]] = 259 + i;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(Added(0, "<unk>"), Added(1, "<s>"), Added(2, "</s>")),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(),
                ["special_tokens"] = new JsonObject
                {
                    ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(1), ["tokens"] = new JsonArray("<s>") },
                },
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = true, ["byte_fallback"] = true, ["ignore_merges"] = false,
                ["vocab"] = vocab,
                ["merges"] = merges ?? new JsonArray("a b", "▁ ab", "ab c"),
            },
        };
    }

    /// <summary>GPT-2 style: byte b has id b (as its byte-level character), then he 256, Ġt 257, Ġthe 258,
    /// ll 259, and the special &lt;|endoftext|&gt; 260 that the post-processor prepends.</summary>
    public static JsonObject ByteLevel(JsonNode? preTokenizer = null, bool ignoreMerges = false)
    {
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[ByteChar(b).ToString()] = b;
        vocab["he"] = 256;
        vocab["Ġt"] = 257;
        vocab["Ġthe"] = 258;
        vocab["ll"] = 259;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Added(260, "<|endoftext|>")),
            ["normalizer"] = null,
            ["pre_tokenizer"] = preTokenizer ?? new JsonObject
            {
                ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true,
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|endoftext|>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["special_tokens"] = new JsonObject
                {
                    ["<|endoftext|>"] = new JsonObject { ["id"] = "<|endoftext|>", ["ids"] = new JsonArray(260), ["tokens"] = new JsonArray("<|endoftext|>") },
                },
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = ignoreMerges,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(new JsonArray("h", "e"), new JsonArray("Ġ", "t"), new JsonArray("Ġt", "he"), new JsonArray("l", "l")),
            },
        };
    }

    /// <summary>GPT-2's printable stand-in for byte <paramref name="b"/>.</summary>
    public static char ByteChar(int b)
    {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (printable) return (char)b;
        int n = 0;
        for (int k = 0; k < b; k++)
            if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF))) n++;
        return (char)(256 + n);
    }
}
