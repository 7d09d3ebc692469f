namespace SparseDecode.Model;

/// <summary>The tensors of one decoder layer, bound by their Hugging Face names and shape-checked.</summary>
public sealed class LayerWeights
{
    public required float[] AttentionNorm { get; init; }
    public required TensorView Q { get; init; }
    public required TensorView K { get; init; }
    public required TensorView V { get; init; }
    public required TensorView O { get; init; }
    public float[]? QBias { get; init; }
    public float[]? KBias { get; init; }
    public float[]? VBias { get; init; }
    public float[]? OBias { get; init; }
    public required float[] MlpNorm { get; init; }
    public required TensorView Gate { get; init; }
    public required TensorView Up { get; init; }
    public required TensorView Down { get; init; }
    public float[]? GateBias { get; init; }
    public float[]? UpBias { get; init; }
    public float[]? DownBias { get; init; }

    public static LayerWeights Bind(WeightStore w, ModelConfig c, int layer)
    {
        string p = $"model.layers.{layer}.";
        int h = c.HiddenSize, q = c.QDim, kv = c.KvDim, f = c.IntermediateSize;
        float[]? Bias(string name, int n, bool present) => present ? w.Get(p + name, n).ToFloatArray() : null;
        return new LayerWeights
        {
            AttentionNorm = w.Get(p + "input_layernorm.weight", h).ToFloatArray(),
            Q = w.Get(p + "self_attn.q_proj.weight", q, h),
            K = w.Get(p + "self_attn.k_proj.weight", kv, h),
            V = w.Get(p + "self_attn.v_proj.weight", kv, h),
            O = w.Get(p + "self_attn.o_proj.weight", h, q),
            QBias = Bias("self_attn.q_proj.bias", q, c.QkvBias),
            KBias = Bias("self_attn.k_proj.bias", kv, c.QkvBias),
            VBias = Bias("self_attn.v_proj.bias", kv, c.QkvBias),
            OBias = Bias("self_attn.o_proj.bias", h, c.OutputBias),
            MlpNorm = w.Get(p + "post_attention_layernorm.weight", h).ToFloatArray(),
            Gate = w.Get(p + "mlp.gate_proj.weight", f, h),
            Up = w.Get(p + "mlp.up_proj.weight", f, h),
            Down = w.Get(p + "mlp.down_proj.weight", h, f),
            GateBias = Bias("mlp.gate_proj.bias", f, c.MlpBias),
            UpBias = Bias("mlp.up_proj.bias", f, c.MlpBias),
            DownBias = Bias("mlp.down_proj.bias", h, c.MlpBias),
        };
    }
}
