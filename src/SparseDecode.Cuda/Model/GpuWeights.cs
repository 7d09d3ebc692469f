using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Model;

/// <summary>One decoder layer's weights on the device: bf16 matrices, q|k|v and gate|up fused into one matrix each
/// (one launch reads both), f32 norms and biases.</summary>
internal sealed class GpuLayerWeights : IDisposable
{
    public required DeviceBuffer AttentionNorm { get; init; }
    /// <summary>[qDim + 2·kvDim][hidden]: q rows, then k, then v.</summary>
    public required DeviceBuffer Qkv { get; init; }
    public DeviceBuffer? QkvBias { get; init; }
    public required DeviceBuffer O { get; init; }
    public DeviceBuffer? OBias { get; init; }
    public required DeviceBuffer MlpNorm { get; init; }
    /// <summary>[2·intermediate][hidden]: gate rows, then up.</summary>
    public required DeviceBuffer GateUp { get; init; }
    public DeviceBuffer? GateUpBias { get; init; }
    public required DeviceBuffer Down { get; init; }
    public DeviceBuffer? DownBias { get; init; }

    public IEnumerable<DeviceBuffer> Matrices => [Qkv, O, GateUp, Down];

    public void Dispose()
    {
        foreach (var b in new[] { AttentionNorm, Qkv, QkvBias, O, OBias, MlpNorm, GateUp, GateUpBias, Down, DownBias }) b?.Dispose();
    }
}

/// <summary>A model's weights on the device, from a checkpoint (converted to bf16 on upload, a staging chunk at a
/// time: no full f32 copy exists on the host) or from device buffers the caller filled.</summary>
internal sealed class GpuWeights : IDisposable
{
    public ModelConfig Config { get; }
    public GpuLayerWeights[] Layers { get; }
    public DeviceBuffer Embedding { get; }
    public DeviceBuffer FinalNorm { get; }
    /// <summary>The embedding itself when the checkpoint ties them.</summary>
    public DeviceBuffer LmHead { get; }

    /// <summary>Weights already on the device in the layout <see cref="GpuLayerWeights"/> describes (bf16 matrices
    /// [rows][cols], f32 norms), of the shape `config` gives; `lmHead` may be `embedding` itself (tied). The
    /// weights own the buffers from here on and free them on Dispose.</summary>
    public GpuWeights(ModelConfig config, GpuLayerWeights[] layers, DeviceBuffer embedding, DeviceBuffer finalNorm, DeviceBuffer lmHead)
    {
        Config = config;
        Layers = layers;
        Embedding = embedding;
        FinalNorm = finalNorm;
        LmHead = lmHead;
    }

    /// <summary>Bytes a decode step reads from the weights: every matrix once (the embedding row is negligible).</summary>
    public long BytesPerStep => Layers.Sum(l => l.Matrices.Sum(m => m.Bytes)) + LmHead.Bytes;

    public static GpuWeights Upload(CudaDevice device, WeightStore store, ModelConfig c)
    {
        var uploader = new Bf16Uploader(device);
        var layers = new GpuLayerWeights[c.NumLayers];
        DeviceBuffer? embedding = null, finalNorm = null, lmHead = null;
        try
        {
            for (int l = 0; l < c.NumLayers; l++)
            {
                var w = LayerWeights.Bind(store, c, l);
                layers[l] = new GpuLayerWeights
                {
                    AttentionNorm = device.Upload<float>(w.AttentionNorm),
                    Qkv = uploader.Matrix(w.Q, w.K, w.V),
                    QkvBias = Concat(device, w.QBias, w.KBias, w.VBias),
                    O = uploader.Matrix(w.O),
                    OBias = Concat(device, w.OBias),
                    MlpNorm = device.Upload<float>(w.MlpNorm),
                    GateUp = uploader.Matrix(w.Gate, w.Up),
                    GateUpBias = Concat(device, w.GateBias, w.UpBias),
                    Down = uploader.Matrix(w.Down),
                    DownBias = Concat(device, w.DownBias),
                };
            }
            var emb = store.Get("model.embed_tokens.weight", c.VocabSize, c.HiddenSize);
            embedding = uploader.Matrix(emb);
            finalNorm = device.Upload<float>(store.Get("model.norm.weight", c.HiddenSize).ToFloatArray());
            if (store.Contains("lm_head.weight")) lmHead = uploader.Matrix(store.Get("lm_head.weight", c.VocabSize, c.HiddenSize));
            else if (c.TieEmbeddings) lmHead = embedding;
            else throw new ModelFormatException($"{store.Directory}: tensor 'lm_head.weight' is missing and tie_word_embeddings is false.");
            return new GpuWeights(c, layers, embedding, finalNorm, lmHead);
        }
        catch
        {
            foreach (var l in layers) l?.Dispose();
            embedding?.Dispose();
            finalNorm?.Dispose();
            if (!ReferenceEquals(lmHead, embedding)) lmHead?.Dispose();
            throw;
        }
    }

    private static DeviceBuffer? Concat(CudaDevice device, params float[]?[] parts)
    {
        if (parts.All(p => p is null)) return null;
        if (parts.Any(p => p is null)) throw new ModelFormatException("Some but not all of the fused projections have a bias.");
        return device.Upload<float>(parts.SelectMany(p => p!).ToArray());
    }

    public void Dispose()
    {
        foreach (var l in Layers) l.Dispose();
        if (!ReferenceEquals(LmHead, Embedding)) LmHead.Dispose();
        Embedding.Dispose();
        FinalNorm.Dispose();
    }

    /// <summary>Copies matrices to the device as bf16 through one reused staging buffer: bf16 sources straight
    /// from the memory map, f32 and f16 converted (round to nearest even) a chunk at a time.</summary>
    private sealed unsafe class Bf16Uploader(CudaDevice device)
    {
        private const int ChunkElements = 1 << 22;
        private readonly ushort[] _staging = new ushort[ChunkElements];
        private readonly float[] _floats = new float[ChunkElements];

        public DeviceBuffer Matrix(params TensorView[] parts)
        {
            long total = parts.Sum(p => p.ElementCount);
            var buffer = device.Allocate(total * 2);
            try
            {
                long offset = 0;
                foreach (var t in parts)
                {
                    for (long done = 0; done < t.ElementCount; done += ChunkElements)
                    {
                        int n = (int)Math.Min(ChunkElements, t.ElementCount - done);
                        byte* src = t.Data + done * t.Type.SizeInBytes();
                        if (t.Type == DType.BF16)
                            buffer.Upload(new ReadOnlySpan<ushort>(src, n), (offset + done) * 2);
                        else
                        {
                            var f = _floats.AsSpan(0, n);
                            ElementConvert.ToSingle(t.Type, src, f);
                            for (int i = 0; i < n; i++) _staging[i] = ElementConvert.SingleToBf16(f[i]);
                            buffer.Upload<ushort>(_staging.AsSpan(0, n), (offset + done) * 2);
                        }
                    }
                    offset += t.ElementCount;
                }
                return buffer;
            }
            catch
            {
                buffer.Dispose();
                throw;
            }
        }
    }
}
