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
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            return Parse(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{path}: not valid JSON ({e.Message}).");
        }
    }

    public static ModelConfig Parse(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{path}: not a JSON object.");
        string arch = root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array && a.GetArrayLength() > 0
            ? a[0].GetString() ?? "" : "";
        var architecture = arch switch
        {
            "LlamaForCausalLM" => Architecture.Llama,
            "MistralForCausalLM" => Architecture.Mistral,
            "Qwen2ForCausalLM" => Architecture.Qwen2,
            "" => throw new ModelFormatException($"{path}: 'architectures' is missing."),
            _ => throw new ModelFormatException($"{path}: architecture '{arch}' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM are)."),
        };

        int Int(string name, int? fallback = null)
        {
            if (root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i))
            {
                if (i <= 0) throw new ModelFormatException($"{path}: '{name}' must be positive, got {i}.");
                return i;
            }
            if (root.TryGetProperty(name, out v) && v.ValueKind != JsonValueKind.Null)
                throw new ModelFormatException($"{path}: '{name}' must be an integer.");
            return fallback ?? throw new ModelFormatException($"{path}: '{name}' is missing.");
        }
        bool Bool(string name, bool fallback) =>
            root.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;
        double? Double(JsonElement obj, string name) =>
            obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

        int hidden = Int("hidden_size");
        int heads = Int("num_attention_heads");
        int kvHeads = Int("num_key_value_heads", heads);
        int headDim = Int("head_dim", hidden / heads);
        if (heads % kvHeads != 0)
            throw new ModelFormatException($"{path}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}.");
        if (headDim % 2 != 0) throw new ModelFormatException($"{path}: head_dim {headDim} must be even for RoPE.");
        string act = root.TryGetProperty("hidden_act", out var h) ? h.GetString() ?? "silu" : "silu";
        if (act != "silu") throw new ModelFormatException($"{path}: hidden_act '{act}' is not supported (silu is).");

        var rope = ParseRope(root, path, Double);
        int? window = null;
        if (root.TryGetProperty("sliding_window", out var sw) && sw.ValueKind == JsonValueKind.Number
            && (architecture != Architecture.Qwen2 || Bool("use_sliding_window", false)))
            window = sw.GetInt32();

        bool attnBias = Bool("attention_bias", false);
        var eos = new List<int>();
        if (root.TryGetProperty("eos_token_id", out var e))
        {
            if (e.ValueKind == JsonValueKind.Number) eos.Add(e.GetInt32());
            else if (e.ValueKind == JsonValueKind.Array) eos.AddRange(e.EnumerateArray().Select(x => x.GetInt32()));
        }
        return new ModelConfig
        {
            Architecture = architecture,
            ArchitectureName = arch,
            VocabSize = Int("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size"),
            NumLayers = Int("num_hidden_layers"),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            HeadDim = headDim,
            MaxPositions = Int("max_position_embeddings", 4096),
            RmsNormEps = root.TryGetProperty("rms_norm_eps", out var eps) && eps.ValueKind == JsonValueKind.Number ? eps.GetDouble() : 1e-6,
            Rope = rope,
            TieEmbeddings = Bool("tie_word_embeddings", false),
            QkvBias = architecture == Architecture.Qwen2 || attnBias,
            OutputBias = architecture == Architecture.Llama && attnBias,
            MlpBias = architecture == Architecture.Llama && Bool("mlp_bias", false),
            SlidingWindow = window,
            BosTokenId = root.TryGetProperty("bos_token_id", out var b) && b.ValueKind == JsonValueKind.Number ? b.GetInt32() : null,
            EosTokenIds = eos,
            TorchDType = root.TryGetProperty("torch_dtype", out var td) ? td.GetString()
                : root.TryGetProperty("dtype", out td) ? td.GetString() : null,
        };
    }

    private static RopeScaling ParseRope(JsonElement root, string path, Func<JsonElement, string, double?> num)
    {
        // Newer transformers write rope_parameters {rope_type, rope_theta, ...}; older ones rope_theta + rope_scaling.
        root.TryGetProperty("rope_parameters", out var p);
        root.TryGetProperty("rope_scaling", out var s);
        var scaling = p.ValueKind == JsonValueKind.Object ? p : s;
        double theta = num(root, "rope_theta") ?? num(p, "rope_theta") ?? 10000.0;
        if (scaling.ValueKind != JsonValueKind.Object) return new RopeScaling(RopeType.Default, theta);
        string type = scaling.TryGetProperty("rope_type", out var t) ? t.GetString() ?? "default"
            : scaling.TryGetProperty("type", out t) ? t.GetString() ?? "default" : "default";
        double factor = num(scaling, "factor") ?? 1.0;
        return type switch
        {
            "default" => new RopeScaling(RopeType.Default, theta),
            "linear" => new RopeScaling(RopeType.Linear, theta, factor),
            "llama3" => new RopeScaling(RopeType.Llama3, theta, factor,
                num(scaling, "low_freq_factor") ?? 1.0, num(scaling, "high_freq_factor") ?? 4.0,
                (int)(num(scaling, "original_max_position_embeddings") ?? 8192)),
            _ => throw new ModelFormatException($"{path}: rope type '{type}' is not supported (default, linear and llama3 are)."),
        };
    }
}
