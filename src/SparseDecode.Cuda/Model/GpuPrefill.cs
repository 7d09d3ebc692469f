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
    public ProductPrecision Precision { get; set; } = ProductPrecision.Split;

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

    private int Parts => Precision == ProductPrecision.Split ? SplitParts : 1;

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
        EnsureLogitRows(logitRows);
        int lastCount = 0;
        foreach (var (offset, count) in PrefillChunks.Split(tokens.Length, ChunkTokens))
        {
            _tokens.UploadAsync(tokens.Slice(offset, count), s);
            Layers(cache, [new Piece(slot, start + offset, 0, count)], count, s);
            if (everyLogits != null)
                for (int r0 = 0; r0 < count; r0 += logitRows)
                {
                    int n = Math.Min(logitRows, count - r0);
                    Logits(r0, n, 0, s);
                    _logits!.Download(_hostLogits.AsSpan(0, n * v));
                    for (int r = 0; r < n; r++) everyLogits(offset + r0 + r, _hostLogits.AsSpan(r * v, v));
                    lastCount = n;
                }
            else if (offset + count == tokens.Length)
            {
                Logits(count - 1, 1, 0, s);
                _logits!.Download(_hostLogits.AsSpan(0, v));
                lastCount = 1;
            }
        }
        s.Synchronize();
        if (!lastLogits.IsEmpty) _hostLogits.AsSpan((lastCount - 1) * v, v).CopyTo(lastLogits);
    }

    /// <summary>One sequence's part of a pass: its tokens at positions First .. First + Count − 1 of slot Slot are the
    /// pass's rows Row .. Row + Count − 1.</summary>
    private readonly record struct Piece(int Slot, int First, int Row, int Count);

    /// <summary>A sequence's tokens for <see cref="RunBatch"/>: `Tokens` at positions Start .. of slot Slot.</summary>
    public readonly record struct Segment(int Slot, ReadOnlyMemory<int> Tokens, int Start);

    private readonly List<Piece> _pieces = [];
    // the segments a pass ends, with the pass's row of each one's last token
    private readonly List<(int Segment, int Row)> _ending = [];
    private int[] _hostTokens = [];

    /// <summary>Several sequences' prompts (or prompt chunks) at once: the segments' tokens are packed into passes of up
    /// to <see cref="ChunkTokens"/> rows (a long segment continues in the next pass), whose matrix products run once
    /// over every row and whose RoPE, cache writes, page summaries and causal attention run per segment over its own
    /// slot. `lastLogits(i, logits)` sees segment i's last token's next-token logits, in segment order; segments with no
    /// tokens are skipped. Each segment's rows are computed as a prefill of that segment alone computes them, in a
    /// product of more rows. Returns when the logits are on the host. The caller checks room and token ids.</summary>
    public void RunBatch(GpuKvCache cache, IReadOnlyList<Segment> segments, Action<int, ReadOnlySpan<float>> lastLogits, CudaStream s)
    {
        int v = _model.Config.VocabSize;
        if (_hostTokens.Length < ChunkTokens) _hostTokens = new int[ChunkTokens];
        int segment = 0, done = 0;
        while (segment < segments.Count)
        {
            // fill one pass: whole segments while they fit, the next one cut where the pass is full
            _pieces.Clear();
            _ending.Clear();
            int rows = 0;
            while (segment < segments.Count && rows < ChunkTokens)
            {
                var g = segments[segment];
                int n = Math.Min(g.Tokens.Length - done, ChunkTokens - rows);
                if (n > 0)
                {
                    g.Tokens.Span.Slice(done, n).CopyTo(_hostTokens.AsSpan(rows));
                    _pieces.Add(new Piece(g.Slot, g.Start + done, rows, n));
                    rows += n;
                    done += n;
                }
                if (done < g.Tokens.Length) break;
                if (n > 0) _ending.Add((segment, rows - 1));
                segment++;
                done = 0;
            }
            if (rows == 0) break;
            _tokens.UploadAsync<int>(_hostTokens.AsSpan(0, rows), s);
            Layers(cache, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pieces), rows, s);
            if (_ending.Count == 0) continue;
            EnsureLogitRows(_ending.Count);
            for (int e = 0; e < _ending.Count; e++) Logits(_ending[e].Row, 1, e, s);
            _logits!.Download(_hostLogits.AsSpan(0, _ending.Count * v));
            for (int e = 0; e < _ending.Count; e++) lastLogits(_ending[e].Segment, _hostLogits.AsSpan(e * v, v));
        }
    }

    /// <summary>Device and host room for `rows` rows of logits.</summary>
    private void EnsureLogitRows(int rows)
    {
        long bytes = 4L * rows * _model.Config.VocabSize;
        if (_logits is not null && _logits.Bytes >= bytes) return;
        _logits?.Dispose();
        _logits = _model.Device.Allocate(bytes);
        _hostLogits = new float[rows * _model.Config.VocabSize];
    }

    /// <summary>Every layer for the pass's `rows` tokens, each piece's at its own positions of its own slot: leaves the
    /// residual stream in _x.</summary>
    private void Layers(GpuKvCache cache, ReadOnlySpan<Piece> pieces, int rows, CudaStream s)
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
            _k.RmsNormBf16(_x.Pointer, H, w.AttentionNorm, H, eps, norm, H, rows, s);
            Project(w.Qkv, qkv, H, norm, H, rows, _qkv.Pointer, qkv, false, s);
            if (w.QkvBias != null) _k.AddBias(_qkv, qkv, qkv, rows, w.QkvBias, s);
            foreach (var p in pieces)
            {
                ulong kBase = cache.KeyBase(l, p.Slot), vBase = cache.ValueBase(l, p.Slot);
                var pq = q.FromRow(p.Row, qd);
                int last = p.First + p.Count - 1;
                _k.RopeAppendSpan(_qkv.At(4L * p.Row * qkv), qkv, c.NumHeads, c.NumKvHeads, hd, _model.RopeCos, _model.RopeSin, p.First,
                    p.Count, kBase, vBase, cache.HeadStride, pq, s);
                if (cache.KeepsSummaries(p.Slot)) cache.SummarisePages(_k, l, p.Slot, p.First, last, s);
                _attention.Attention(pq, kBase, vBase, cache.HeadStride, hd, c.NumHeads, c.NumKvHeads, p.Count, p.First,
                    attn.FromRow(p.Row, qd), s);
            }
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

    /// <summary>Logits of the chunk's rows r0 .. r0 + n − 1 into _logits rows at .. at + n − 1 ([row][vocab]).</summary>
    private void Logits(int r0, int n, int at, CudaStream s)
    {
        var c = _model.Config;
        int H = c.HiddenSize;
        var norm = PartsOf(_norm, H);
        _k.RmsNormBf16(_x.At(4L * r0 * H), H, _model.Weights.FinalNorm, H, (float)c.RmsNormEps, norm, H, n, s);
        Project(_model.Weights.LmHead, c.VocabSize, H, norm, H, n, _logits!.At(4L * at * c.VocabSize), c.VocabSize, false, s);
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
