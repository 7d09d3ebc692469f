using System.Text.RegularExpressions;
using SparseDecode.Model;

namespace SparseDecode.Export;

/// <summary>A Hugging Face checkpoint as GGUF, the way llama.cpp's own converter writes it, so that llama.cpp,
/// Ollama and LLamaSharp load our models: llama.cpp's tensor names, the architecture's metadata keys (RoPE base
/// read from rope_theta or rope_parameters, whichever the config uses), tensors in their stored type (bf16, f16
/// or f32; 1-D tensors as f32, as the converter writes them), q and k rows permuted from Hugging Face's
/// rotate-half layout to llama.cpp's adjacent pairs (Llama and Mistral; Qwen2 rotates halves in llama.cpp too),
/// and the byte-level BPE tokenizer as tokenizer.ggml.* keys.</summary>
public static partial class GgufExport
{
    /// <summary>Writes the checkpoint in `modelDir` (config.json, *.safetensors, tokenizer.json) to `outPath`.</summary>
    public static void Write(string modelDir, string outPath)
    {
        var config = ModelConfig.Load(modelDir);
        using var weights = WeightStore.Open(modelDir);
        var gguf = new GgufWriter();
        string arch = config.Architecture == Architecture.Qwen2 ? "qwen2" : "llama";
        AddModelMetadata(gguf, config, arch, Path.GetFileName(Path.GetFullPath(modelDir).TrimEnd('/')), weights);
        GgufTokenizer.Add(gguf, modelDir, config);
        AddTensors(gguf, config, arch, weights);
        string temp = outPath + ".partial";
        try
        {
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
                gguf.Write(file);
            File.Move(temp, outPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    private static void AddModelMetadata(GgufWriter gguf, ModelConfig c, string arch, string name, WeightStore weights)
    {
        var type = weights.Get("model.layers.0.self_attn.q_proj.weight", c.QDim, c.HiddenSize).Type;
        gguf.Add("general.architecture", arch);
        gguf.Add("general.name", name);
        gguf.Add("general.alignment", (uint)GgufWriter.Alignment);
        // llama.cpp's LLAMA_FTYPE: all f32 = 0, mostly f16 = 1, mostly bf16 = 32
        gguf.Add("general.file_type", type switch { DType.F32 => 0u, DType.F16 => 1u, _ => 32u });
        gguf.Add($"{arch}.context_length", (uint)c.MaxPositions);
        gguf.Add($"{arch}.embedding_length", (uint)c.HiddenSize);
        gguf.Add($"{arch}.block_count", (uint)c.NumLayers);
        gguf.Add($"{arch}.feed_forward_length", (uint)c.IntermediateSize);
        gguf.Add($"{arch}.attention.head_count", (uint)c.NumHeads);
        gguf.Add($"{arch}.attention.head_count_kv", (uint)c.NumKvHeads);
        gguf.Add($"{arch}.attention.key_length", (uint)c.HeadDim);
        gguf.Add($"{arch}.attention.value_length", (uint)c.HeadDim);
        gguf.Add($"{arch}.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        gguf.Add($"{arch}.rope.dimension_count", (uint)c.HeadDim);
        gguf.Add($"{arch}.rope.freq_base", (float)c.Rope.Theta);
        gguf.Add($"{arch}.vocab_size", (uint)c.VocabSize);
        if (c.Rope.Type == RopeType.Linear)
        {
            gguf.Add($"{arch}.rope.scaling.type", "linear");
            gguf.Add($"{arch}.rope.scaling.factor", (float)c.Rope.Factor);
        }
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.(.+)$")]
    private static partial Regex LayerTensor();

    /// <summary>llama.cpp's name of a Hugging Face tensor, or null for one it does not take (rotary tables).</summary>
    public static string? TensorName(string hfName)
    {
        switch (hfName)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        var m = LayerTensor().Match(hfName);
        if (!m.Success) throw new ModelFormatException($"Tensor '{hfName}' has no GGUF name.");
        string rest = m.Groups[2].Value;
        if (rest.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) return null;
        string suffix = rest.EndsWith(".bias", StringComparison.Ordinal) ? "bias" : "weight";
        string module = rest[..rest.LastIndexOf('.')];
        string gguf = module switch
        {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => throw new ModelFormatException($"Tensor '{hfName}' has no GGUF name."),
        };
        return $"blk.{m.Groups[1].Value}.{gguf}.{suffix}";
    }

    private static unsafe void AddTensors(GgufWriter gguf, ModelConfig c, string arch, WeightStore weights)
    {
        // in the converter's order: embedding, layers in order, final norm, output
        var tensors = weights.All().Select(t => (View: t, Name: TensorName(t.Name)))
            .Where(t => t.Name is not null)
            .OrderBy(t => Order(t.View.Name)).ThenBy(t => t.View.Name, StringComparer.Ordinal)
            .ToList();
        bool permute = arch == "llama";
        foreach (var (view, name) in tensors)
        {
            var t = view;
            int heads = t.Name.EndsWith("q_proj.weight", StringComparison.Ordinal) || t.Name.EndsWith("q_proj.bias", StringComparison.Ordinal) ? c.NumHeads
                : t.Name.EndsWith("k_proj.weight", StringComparison.Ordinal) || t.Name.EndsWith("k_proj.bias", StringComparison.Ordinal) ? c.NumKvHeads : 0;
            if (!permute) heads = 0;
            var dims = t.Shape.Reverse().ToArray();
            if (t.Shape.Length == 1)
            {
                // 1-D tensors (norms, biases) as f32
                var values = t.ToFloatArray();
                if (heads > 0) values = PermuteRows(values, heads, 1);
                gguf.AddTensor(name!, dims, GgmlType.F32, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())));
                continue;
            }
            var type = t.Type switch { DType.F32 => GgmlType.F32, DType.F16 => GgmlType.F16, _ => GgmlType.BF16 };
            long rows = t.Shape[0], rowBytes = t.Shape[1] * t.Type.SizeInBytes();
            gguf.AddTensor(name!, dims, type, s =>
            {
                for (long r = 0; r < rows; r++)
                {
                    long from = heads > 0 ? SourceRow(r, rows, heads) : r;
                    s.Write(new ReadOnlySpan<byte>(t.Data + from * rowBytes, (int)rowBytes));
                }
            });
        }
        if (c.Rope.Type == RopeType.Llama3)
        {
            // llama.cpp applies Llama-3's frequency rescaling as a per-dimension divisor of the base frequencies
            var plain = (c.Rope with { Type = RopeType.Default }).InverseFrequencies(c.HeadDim);
            var scaled = c.Rope.InverseFrequencies(c.HeadDim);
            var factors = plain.Select((f, i) => (float)(f / scaled[i])).ToArray();
            gguf.AddTensor("rope_freqs.weight", [factors.Length], GgmlType.F32, s => s.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(factors.AsSpan())));
        }
    }

    private static int Order(string hfName) => hfName switch
    {
        "model.embed_tokens.weight" => 0,
        "model.norm.weight" => 2,
        "lm_head.weight" => 3,
        _ => 1,
    };

    /// <summary>The Hugging Face row that lands at row `r` when a q/k projection of `heads` heads is reordered from
    /// rotate-half (dimension i pairs with i + d/2) to adjacent pairs (2i with 2i+1), as llama.cpp's converter does.</summary>
    public static long SourceRow(long r, long rows, int heads)
    {
        long d = rows / heads, half = d / 2;
        long head = r / d, within = r % d;
        return head * d + (within % 2) * half + within / 2;
    }

    private static float[] PermuteRows(float[] values, int heads, int cols)
    {
        var result = new float[values.Length];
        long rows = values.Length / cols;
        for (long r = 0; r < rows; r++)
            Array.Copy(values, SourceRow(r, rows, heads) * cols, result, r * cols, cols);
        return result;
    }
}
