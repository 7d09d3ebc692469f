using System.Text.Json;

namespace SparseDecode.Model;

/// <summary>The architecture variants the engine runs; they differ only in biases and defaults.</summary>
public enum Architecture
{
    Llama,
    Mistral,
    Qwen2,
}

/// <summary>config.json of a Hugging Face Llama-family checkpoint, validated. Reads both the classic form
/// (rope_theta + rope_scaling) and the newer rope_parameters form.</summary>
public sealed record ModelConfig
{
    public required Architecture Architecture { get; init; }
    public required string ArchitectureName { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositions { get; init; }
    public required double RmsNormEps { get; init; }
    public required RopeScaling Rope { get; init; }
    public required bool TieEmbeddings { get; init; }
    /// <summary>Bias on the q, k and v projections (Qwen2 always; Llama when attention_bias).</summary>
    public required bool QkvBias { get; init; }
    /// <summary>Bias on the output projection (Llama attention_bias only).</summary>
    public required bool OutputBias { get; init; }
    public required bool MlpBias { get; init; }
    public int? SlidingWindow { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public string? TorchDType { get; init; }

    public int GroupSize => NumHeads / NumKvHeads;
    public int QDim => NumHeads * HeadDim;
    public int KvDim => NumKvHeads * HeadDim;

    public static ModelConfig Load(string directory)
    {
        string path = Path.Combine(directory, "config.json");
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found.");
        return FromJson(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses config.json's bytes; `path` only names the file in messages. Throws ModelFormatException.</summary>
    public static ModelConfig FromJson(ReadOnlyMemory<byte> json, string path)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{path}: not valid JSON ({e.Message}).");
        }
        using (doc)
        {
            if (JsonText.FirstInvalid(json.Span, 64) is string at)
                throw new ModelFormatException($"{path}: holds a string that is not valid UTF-8 or has a lone surrogate{JsonText.Where(at)}.");
            return Parse(doc.RootElement, path);
        }
    }

    /// <summary>Upper bounds of the values that size memory, far above any published Llama-family model (the
    /// largest have ~126 layers, 16K hidden, 256K vocabulary, 10M positions) and low enough that arrays sized by
    /// them, or by their products, cannot overflow or exhaust memory before the weights are checked.</summary>
    public const int MaxLayers = 1024, MaxHidden = 1 << 16, MaxIntermediate = 1 << 20, MaxHeads = 1024, MaxHeadDim = 1024,
        MaxVocab = 1 << 24, MaxPositionsLimit = 1 << 28;

    public static ModelConfig Parse(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{path}: not a JSON object.");
        string arch = root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0
            ? a[0].ValueKind == JsonValueKind.String ? a[0].GetString()! : throw new ModelFormatException($"{path}: 'architectures' must hold strings.")
            : "";
        var architecture = arch switch
        {
            "LlamaForCausalLM" => Architecture.Llama,
            "MistralForCausalLM" => Architecture.Mistral,
            "Qwen2ForCausalLM" => Architecture.Qwen2,
            "" => throw new ModelFormatException($"{path}: 'architectures' is missing."),
            _ => throw new ModelFormatException($"{path}: architecture '{arch}' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM are)."),
        };

        int Int(string name, int max, int? fallback = null)
        {
            if (root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long i))
            {
                if (i <= 0) throw new ModelFormatException($"{path}: '{name}' must be positive, got {i}.");
                if (i > max) throw new ModelFormatException($"{path}: '{name}' is {i}, above the largest this engine accepts ({max}).");
                return (int)i;
            }
            if (root.TryGetProperty(name, out v) && v.ValueKind != JsonValueKind.Null)
                throw new ModelFormatException($"{path}: '{name}' must be an integer.");
            return fallback ?? throw new ModelFormatException($"{path}: '{name}' is missing.");
        }
        bool Bool(string name, bool fallback) =>
            root.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;
        double? Double(JsonElement obj, string name)
        {
            if (obj.ValueKind != JsonValueKind.Object || !obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind != JsonValueKind.Number) throw new ModelFormatException($"{path}: '{name}' must be a number.");
            return v.GetDouble();
        }
        string? Str(JsonElement obj, string name)
        {
            if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            return v.ValueKind == JsonValueKind.String ? v.GetString() : throw new ModelFormatException($"{path}: '{name}' must be a string.");
        }
        int vocab = Int("vocab_size", MaxVocab);
        int TokenId(JsonElement v, string name)
        {
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int id) || id < 0)
                throw new ModelFormatException($"{path}: '{name}' must hold non-negative integer token ids.");
            // An end id the model can never produce would let every generation run to max_tokens.
            if (id >= vocab) throw new ModelFormatException($"{path}: '{name}' {id} is outside the vocabulary of {vocab} ('vocab_size').");
            return id;
        }

        int hidden = Int("hidden_size", MaxHidden);
        int heads = Int("num_attention_heads", MaxHeads);
        int kvHeads = Int("num_key_value_heads", MaxHeads, heads);
        int headDim = Int("head_dim", MaxHeadDim, Math.Max(1, hidden / heads));
        if (heads % kvHeads != 0)
            throw new ModelFormatException($"{path}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}.");
        if (headDim % 2 != 0) throw new ModelFormatException($"{path}: head_dim {headDim} must be even for RoPE.");
        string act = Str(root, "hidden_act") ?? "silu";
        if (act != "silu") throw new ModelFormatException($"{path}: hidden_act '{act}' is not supported (silu is).");

        var rope = ParseRope(root, path, Double, Str);
        double eps = Double(root, "rms_norm_eps") ?? 1e-6;
        if (!(eps > 0 && eps < 1)) throw new ModelFormatException($"{path}: 'rms_norm_eps' must be in (0, 1), got {eps}.");
        int? window = null;
        if (root.TryGetProperty("sliding_window", out var sw) && sw.ValueKind != JsonValueKind.Null
            && (architecture != Architecture.Qwen2 || Bool("use_sliding_window", false)))
            window = Int("sliding_window", int.MaxValue);

        bool attnBias = Bool("attention_bias", false);
        var eos = new List<int>();
        if (root.TryGetProperty("eos_token_id", out var e))
        {
            if (e.ValueKind == JsonValueKind.Number) eos.Add(TokenId(e, "eos_token_id"));
            else if (e.ValueKind == JsonValueKind.Array) eos.AddRange(e.EnumerateArray().Select(x => TokenId(x, "eos_token_id")));
            else if (e.ValueKind != JsonValueKind.Null) throw new ModelFormatException($"{path}: 'eos_token_id' must be a token id or an array of them.");
        }
        return new ModelConfig
        {
            Architecture = architecture,
            ArchitectureName = arch,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size", MaxIntermediate),
            NumLayers = Int("num_hidden_layers", MaxLayers),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            MaxPositions = Int("max_position_embeddings", MaxPositionsLimit, 4096),
            RmsNormEps = eps,
            Rope = rope,
            TieEmbeddings = Bool("tie_word_embeddings", false),
            QkvBias = architecture == Architecture.Qwen2 || attnBias,
            OutputBias = architecture == Architecture.Llama && attnBias,
            MlpBias = architecture == Architecture.Llama && Bool("mlp_bias", false),
            SlidingWindow = window,
            BosTokenId = root.TryGetProperty("bos_token_id", out var b) && b.ValueKind != JsonValueKind.Null ? TokenId(b, "bos_token_id") : null,
            EosTokenIds = eos,
            TorchDType = Str(root, "torch_dtype") ?? Str(root, "dtype"),
        };
    }

    private static RopeScaling ParseRope(JsonElement root, string path, Func<JsonElement, string, double?> num,
        Func<JsonElement, string, string?> str)
    {
        // Newer transformers write rope_parameters {rope_type, rope_theta, ...}; older ones rope_theta + rope_scaling.
        root.TryGetProperty("rope_parameters", out var p);
        root.TryGetProperty("rope_scaling", out var s);
        var scaling = p.ValueKind == JsonValueKind.Object ? p : s;
        double Positive(JsonElement obj, string name, double fallback)
        {
            double v = num(obj, name) ?? fallback;
            // Zero, negative or non-finite values give NaN or infinite frequencies, hence NaN logits at every step.
            if (!(v > 0 && double.IsFinite(v))) throw new ModelFormatException($"{path}: '{name}' must be a positive finite number, got {v}.");
            return v;
        }
        double theta = num(root, "rope_theta") is not null ? Positive(root, "rope_theta", 0) : Positive(p, "rope_theta", 10000.0);
        if (scaling.ValueKind != JsonValueKind.Object) return new RopeScaling(RopeType.Default, theta);
        string type = str(scaling, "rope_type") ?? str(scaling, "type") ?? "default";
        double factor = Positive(scaling, "factor", 1.0);
        switch (type)
        {
            case "default": return new RopeScaling(RopeType.Default, theta);
            case "linear": return new RopeScaling(RopeType.Linear, theta, factor);
            case "llama3":
                double low = Positive(scaling, "low_freq_factor", 1.0), high = Positive(scaling, "high_freq_factor", 4.0);
                double original = Positive(scaling, "original_max_position_embeddings", 8192);
                if (!(high > low)) throw new ModelFormatException($"{path}: 'high_freq_factor' ({high}) must exceed 'low_freq_factor' ({low}).");
                if (original > MaxPositionsLimit) throw new ModelFormatException($"{path}: 'original_max_position_embeddings' is {original}, above the largest this engine accepts ({MaxPositionsLimit}).");
                return new RopeScaling(RopeType.Llama3, theta, factor, low, high, (int)original);
            default: throw new ModelFormatException($"{path}: rope type '{type}' is not supported (default, linear and llama3 are).");
        }
    }
}
