using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Model;

/// <summary>The GPU prefill of one sequence: the prompt in chunks of up to <see cref="ChunkTokens"/> tokens, each
/// through every layer as matrix products (cuBLAS, bf16 weights × bf16 activations, f32 accumulate on the tensor
/// cores) and a causal flash attention over the cached prefix and the chunk itself
/// (<see cref="PrefillAttentionKernels"/>). The residual stream stays f32 as in the CPU engine; K and V go to the
/// cache as bf16 with Quest's page summaries, exactly what decode steps of the same tokens would have left.
/// Activations exist for one chunk only. Everything is queued on the caller's stream.</summary>
internal sealed class GpuPrefill : IDisposable
{
    /// <summary>Preferred tokens per chunk: big enough that the products run near the tensor cores' peak.</summary>
    public const int DefaultChunkTokens = 4096;
    /// <summary>Device memory for logits of several rows at once when every token's logits are wanted.</summary>
    public const long LogitBudgetBytes = 256L << 20;

    private readonly GpuModel _model;
    private readonly ModelKernels _k;
    private readonly PrefillAttentionKernels _attention;
    private readonly CublasGemm _gemm;
    /// <summary>bf16 parts of an operand in split precision.</summary>
    private const int SplitParts = 3;

    private readonly DeviceBuffer _tokens, _x, _norm, _qkv, _q, _attn, _gateUp, _h;
    private DeviceBuffer? _logits;
    private float[] _hostLogits = [];

    public int ChunkTokens { get; }
    public PrefillPrecision Precision { get; set; } = PrefillPrecision.Split;

    /// <summary>Whether a model's heads fit the prefill attention (multiples of 8 channels up to 128).</summary>
    public static bool Supports(ModelConfig c) => PrefillAttentionKernels.Supports(c.HeadDim);

    /// <summary>Bytes of activations per chunk token.</summary>
    public static long BytesPerToken(ModelConfig c) =>
        4 + 4L * c.HiddenSize + 4L * QkvWidth(c) + 8L * c.IntermediateSize + 2L * SplitParts * (c.HiddenSize + 2L * c.QDim + c.IntermediateSize);

    private static int QkvWidth(ModelConfig c) => c.QDim + 2 * c.KvDim;

    public GpuPrefill(GpuModel model, int chunkTokens = DefaultChunkTokens)
    {
        var c = model.Config;
        if (!Supports(c)) throw new ArgumentException($"The GPU prefill takes heads of a multiple of 8 channels up to {PrefillAttentionKernels.MaxHeadDim}, not {c.HeadDim}.");
        _model = model;
        _k = model.Kernels;
        var dev = model.Device;
        ChunkTokens = PrefillChunks.ChunkTokens(chunkTokens, BytesPerToken(c), dev.MemoryInfo().Free, model.Capacity);
        _gemm = new CublasGemm(dev);
        _attention = new PrefillAttentionKernels(dev);
        long t = ChunkTokens;
        _tokens = dev.Allocate(t * 4);
        _x = dev.Allocate(t * 4 * c.HiddenSize);
        _norm = dev.Allocate(t * 2 * SplitParts * c.HiddenSize);
        _qkv = dev.Allocate(t * 4 * QkvWidth(c));
        _q = dev.Allocate(t * 2 * SplitParts * c.QDim);
        _attn = dev.Allocate(t * 2 * SplitParts * c.QDim);
        _gateUp = dev.Allocate(t * 8 * c.IntermediateSize);
        _h = dev.Allocate(t * 2 * SplitParts * c.IntermediateSize);
    }

    private int Parts => Precision == PrefillPrecision.Split ? SplitParts : 1;

    /// <summary>A chunk-sized operand buffer of `width` values per row as bf16 parts.</summary>
    private Bf16Parts PartsOf(DeviceBuffer b, int width) => new(b.Pointer, (long)ChunkTokens * width, Parts);

    /// <summary>Runs `tokens` at positions start .. of slot `slot` through the model, filling the slot's cache.
    /// lastLogits (vocabulary-long, or empty) gets the last token's next-token logits; everyLogits, when given,
    /// sees (i, logits) for every token i in order (scoring). Returns when the logits are on the host.</summary>
    public void Run(GpuKvCache cache, int slot, ReadOnlySpan<int> tokens, int start, Span<float> lastLogits,
        Action<int, ReadOnlySpan<float>>? everyLogits, CudaStream s)
    {
        var c = _model.Config;
        int v = c.VocabSize;
        if (tokens.IsEmpty) return;
        if (start < 0 || start + tokens.Length > cache.Capacity)
            throw new Engine.ContextOverflowException($"The sequence needs {start + tokens.Length} positions but the GPU cache holds {cache.Capacity}.");
        if (!lastLogits.IsEmpty && lastLogits.Length != v) throw new ArgumentException($"The logits span holds {lastLogits.Length} values, not the vocabulary's {v}.");
        foreach (int id in tokens)
            if ((uint)id >= (uint)v) throw new ArgumentOutOfRangeException(nameof(tokens), $"Token id {id} is outside the vocabulary of {v}.");
        int logitRows = everyLogits is null ? 1 : PrefillChunks.LogitRows(v, ChunkTokens, LogitBudgetBytes);
        if (_logits is null || _logits.Bytes < 4L * logitRows * v)
        {
            _logits?.Dispose();
            _logits = _model.Device.Allocate(4L * logitRows * v);
            _hostLogits = new float[logitRows * v];
        }
        int lastCount = 0;
        foreach (var (offset, count) in PrefillChunks.Split(tokens.Length, ChunkTokens))
        {
            _tokens.UploadAsync(tokens.Slice(offset, count), s);
            Layers(cache, slot, start + offset, count, s);
            if (everyLogits != null)
                for (int r0 = 0; r0 < count; r0 += logitRows)
                {
                    int n = Math.Min(logitRows, count - r0);
                    Logits(r0, n, s);
                    _logits.Download(_hostLogits.AsSpan(0, n * v));
                    for (int r = 0; r < n; r++) everyLogits(offset + r0 + r, _hostLogits.AsSpan(r * v, v));
                    lastCount = n;
                }
            else if (offset + count == tokens.Length)
            {
                Logits(count - 1, 1, s);
                _logits.Download(_hostLogits.AsSpan(0, v));
                lastCount = 1;
            }
        }
        s.Synchronize();
        if (!lastLogits.IsEmpty) _hostLogits.AsSpan((lastCount - 1) * v, v).CopyTo(lastLogits);
    }

    /// <summary>Every layer for the chunk's `rows` tokens at positions first ..: leaves the residual stream in _x.</summary>
    private void Layers(GpuKvCache cache, int slot, int first, int rows, CudaStream s)
    {
        var c = _model.Config;
        var w8 = _model.Weights;
        int H = c.HiddenSize, F = c.IntermediateSize, qd = c.QDim, qkv = QkvWidth(c), hd = c.HeadDim;
        float eps = (float)c.RmsNormEps;
        Bf16Parts norm = PartsOf(_norm, H), q = PartsOf(_q, qd), attn = PartsOf(_attn, qd), h = PartsOf(_h, F);
        _k.Embed(w8.Embedding, _tokens.Pointer, rows, H, _x, H, s);
        for (int l = 0; l < c.NumLayers; l++)
        {
            var w = w8.Layers[l];
            ulong kBase = cache.KeyBase(l, slot), vBase = cache.ValueBase(l, slot);
            _k.RmsNormBf16(_x.Pointer, H, w.AttentionNorm, H, eps, norm, H, rows, s);
            Project(w.Qkv, qkv, H, norm, H, rows, _qkv.Pointer, qkv, false, s);
            if (w.QkvBias != null) _k.AddBias(_qkv, qkv, qkv, rows, w.QkvBias, s);
            _k.RopeAppendSpan(_qkv, qkv, c.NumHeads, c.NumKvHeads, hd, _model.RopeCos, _model.RopeSin, first, rows, kBase, vBase,
                cache.HeadStride, q, s);
            _k.PageSummariesSpan(kBase, cache.PageMinBase(l, slot), cache.PageMaxBase(l, slot), cache.HeadStride, cache.PageHeadStride,
                cache.PageSize, hd, c.NumKvHeads, first, first + rows - 1, s);
            _attention.Attention(q, kBase, vBase, cache.HeadStride, hd, c.NumHeads, c.NumKvHeads, rows, first, attn, s);
            if (w.OBias != null) _k.AddBias(_x, H, H, rows, w.OBias, s);
            Project(w.O, H, qd, attn, qd, rows, _x.Pointer, H, true, s);
            _k.RmsNormBf16(_x.Pointer, H, w.MlpNorm, H, eps, norm, H, rows, s);
            Project(w.GateUp, 2 * F, H, norm, H, rows, _gateUp.Pointer, 2 * F, false, s);
            if (w.GateUpBias != null) _k.AddBias(_gateUp, 2 * F, 2 * F, rows, w.GateUpBias, s);
            _k.SwiGluBf16(_gateUp, F, 2 * F, rows, h, F, s);
            if (w.DownBias != null) _k.AddBias(_x, H, H, rows, w.DownBias, s);
            Project(w.Down, H, F, h, F, rows, _x.Pointer, H, true, s);
        }
    }

    /// <summary>Logits of the chunk's rows r0 .. r0 + n − 1 into _logits [n][vocab].</summary>
    private void Logits(int r0, int n, CudaStream s)
    {
        var c = _model.Config;
        int H = c.HiddenSize;
        var norm = PartsOf(_norm, H);
        _k.RmsNormBf16(_x.At(4L * r0 * H), H, _model.Weights.FinalNorm, H, (float)c.RmsNormEps, norm, H, n, s);
        Project(_model.Weights.LmHead, c.VocabSize, H, norm, H, n, _logits!.Pointer, c.VocabSize, false, s);
    }

    /// <summary>y (+)= W · Σ parts for `rows` rows: one product per bf16 part, the smallest first (so f32
    /// accumulation sees the small terms before the large ones).</summary>
    private void Project(DeviceBuffer weights, int n, int k, in Bf16Parts x, int xStride, int rows, ulong y, int yStride,
        bool accumulate, CudaStream s)
    {
        for (int p = x.Parts - 1; p >= 0; p--)
            _gemm.Multiply(weights.Pointer, n, k, x.Part(p), xStride, rows, y, yStride, accumulate || p < x.Parts - 1, s);
    }

    public void Dispose()
    {
        foreach (var b in new[] { _tokens, _x, _norm, _qkv, _q, _attn, _gateUp, _h, _logits }) b?.Dispose();
        _attention.Dispose();
        _gemm.Dispose();
    }
}
