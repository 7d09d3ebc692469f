using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Model;

/// <summary>Attention of one layer inside a GPU decode step: reads the model's rotated queries
/// (<see cref="GpuModel.Queries"/>) and writes <see cref="GpuModel.AttentionOutput"/>. Null in a step means dense.</summary>
internal interface ILayerAttention
{
    void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream);
}

/// <summary>A Llama-family decoder whose whole step runs on the GPU: embedding, per layer RMSNorm → fused q|k|v
/// projection → RoPE + bf16 cache append → attention → output projection (+ residual) → RMSNorm → fused gate|up →
/// SwiGLU → down projection (+ residual), final norm and the logits of every row. A step takes up to
/// <see cref="MaxRows"/> rows: sequences of a batch, or the tokens of a prefill chunk (causal through per-row
/// lengths); its matrix products run over them as one cuBLAS product from <see cref="GemvOptions.CublasMinRows"/>
/// rows on (the weights read once per step), else in launches of the CUDA-core matrix-vector kernels. Activations are f32, weights and cache bf16. Every launch only queues work, so a step can be
/// captured into a CUDA graph and replayed with new tokens and positions written into the cache's row arrays.</summary>
internal sealed class GpuModel : IDisposable
{
    public ModelConfig Config { get; }
    public GpuWeights Weights { get; }
    public DecodeKernels DecodeKernels { get; }
    public ModelKernels Kernels { get; }
    public CudaDevice Device => Kernels.Device;
    /// <summary>Positions the rope tables cover (and the longest cache this model can serve).</summary>
    public int Capacity { get; }
    /// <summary>Heads of 128 channels in groups of 4 or 8 go through the tuned flash-decoding kernels; any other shape
    /// through the any-shape attention.</summary>
    public bool TunedAttention { get; }

    /// <summary>Heads of 128 channels in groups of 4 or 8: the shape the tuned decode kernels are instantiated for.</summary>
    public static bool IsTunedShape(ModelConfig c) => c.HeadDim == DecodeKernels.HeadDim && c.GroupSize is 4 or 8;

    private readonly DeviceBuffer _cos, _sin;
    /// <summary>RoPE tables [position][headDim / 2] (the CPU engine's own numbers).</summary>
    public DeviceBuffer RopeCos => _cos;
    public DeviceBuffer RopeSin => _sin;
    private GpuPrefill? _prefill;

    /// <summary>The chunked tensor-core prefill of this model (created at first use: cuBLAS and its buffers), or null
    /// when the heads do not fit its attention kernel (<see cref="GpuPrefill.Supports"/>).</summary>
    public GpuPrefill? Prefill => _prefill ??= GpuPrefill.Supports(Config) ? new GpuPrefill(this) : null;
    private readonly DeviceBuffer _x, _xn, _qkv, _gateUp, _h;
    /// <summary>The products of steps of <see cref="GemvOptions.CublasMinRows"/> rows or more; null where no step is
    /// that wide.</summary>
    private readonly WideProduct? _wide;
    public DeviceBuffer Queries { get; }
    public DeviceBuffer AttentionOutput { get; }
    public DeviceBuffer Logits { get; }
    public DecodeKernels.AttentionWorkspace Workspace { get; }

    private int QkvRows => Config.QDim + 2 * Config.KvDim;

    /// <summary>Rows one step takes.</summary>
    public int MaxRows { get; }

    /// <param name="maxRows">Rows a step may take (at least <see cref="ModelKernels.MaxRows"/>).</param>
    public GpuModel(DecodeKernels decodeKernels, ModelKernels kernels, GpuWeights weights, int capacity, int sparseBudget = 2048,
        int maxRows = ModelKernels.MaxRows)
    {
        var c = weights.Config;
        if (c.HeadDim % 2 != 0 || c.HeadDim > ModelKernels.MaxAnyHeadDim)
            throw new ArgumentException($"Head size {c.HeadDim} is not supported on the GPU (even, at most {ModelKernels.MaxAnyHeadDim}).");
        foreach (int k in new[] { c.HiddenSize, c.QDim, c.IntermediateSize })
            if (k % 8 != 0) throw new ArgumentException($"The GPU model needs hidden, attention and MLP widths that are multiples of 8 (got {k}).");
        Config = c;
        Weights = weights;
        DecodeKernels = decodeKernels;
        Kernels = kernels;
        Capacity = Math.Min(capacity, c.MaxPositions);
        TunedAttention = IsTunedShape(c);
        var dev = kernels.Device;
        var rope = new Rope(c.Rope, c.HeadDim, Capacity);
        _cos = dev.Upload(rope.CosTable);
        _sin = dev.Upload(rope.SinTable);
        MaxRows = Math.Max(maxRows, ModelKernels.MaxRows);
        // whole launches of ModelKernels.MaxRows rows: a launch reads every row of its kernel's plan
        int rows = (MaxRows + ModelKernels.MaxRows - 1) / ModelKernels.MaxRows * ModelKernels.MaxRows;
        _x = dev.Allocate(rows * 4L * c.HiddenSize);
        _xn = dev.Allocate(rows * 4L * Math.Max(c.HiddenSize, c.QDim));
        _qkv = dev.Allocate(rows * 4L * QkvRows);
        Queries = dev.Allocate(rows * 4L * c.QDim);
        AttentionOutput = dev.Allocate(rows * 4L * c.QDim);
        _gateUp = dev.Allocate(rows * 8L * c.IntermediateSize);
        _h = dev.Allocate(rows * 4L * c.IntermediateSize);
        Logits = dev.Allocate(rows * 4L * c.VocabSize);
        if (MaxRows >= kernels.Options.CublasMinRows)
            _wide = new WideProduct(kernels, MaxRows, Math.Max(Math.Max(c.HiddenSize, c.QDim), c.IntermediateSize),
                Math.Max(Math.Max(QkvRows, c.HiddenSize), Math.Max(2L * c.IntermediateSize, c.VocabSize)));
        Workspace = new DecodeKernels.AttentionWorkspace(dev, rows, c.NumHeads, DecodeKernels.AttentionWorkspace.ChunksFor(Capacity, sparseBudget, c.HeadDim));
        // zero once: the matrix-vector kernels read all rows of their plan, written or not
        var z = new CudaStream(dev);
        foreach (var b in new[] { _x, _xn, _qkv, Queries, AttentionOutput, _gateUp, _h }) b.Fill32(0, b.Bytes / 4, z);
        z.Synchronize();
        z.Dispose();
    }

    /// <summary>Dense attention of the step's rows over their caches.</summary>
    public void DenseAttention(in KvView kv, CudaStream s) => DenseAttention(kv, Queries, AttentionOutput, s);

    /// <summary>Dense attention of kv's rows, whose queries start at `queries` and outputs at `output`; `passRows`: the
    /// rows are runs of one sequence's consecutive positions (dense passes), which the tuned shape attends on the
    /// tensor cores, each key read once for a run's rows (<see cref="DecodeKernels.RunsAttention"/>).</summary>
    public void DenseAttention(in KvView kv, DeviceBuffer queries, DeviceBuffer output, CudaStream s, bool passRows = false)
    {
        if (!TunedAttention) Kernels.AttentionAny(kv, Config.HeadDim, queries, output, Workspace, s);
        else if (passRows && PassesOnTensorCores) DecodeKernels.RunsAttention(kv, queries, output, Workspace, s);
        else DecodeKernels.Attention(kv, queries, null, 0, IndexHeads.KvHead, output, null, Workspace, s);
    }

    /// <summary>Whether dense passes attend on the tensor cores (the default) or, one query per row, through the
    /// kernel of distinct sequences (which `gpu-step` times beside it).</summary>
    public bool PassesOnTensorCores { get; set; } = true;

    /// <summary>Whether a step of `rows` rows runs its products through cuBLAS (<see cref="WideProduct"/>) rather than
    /// the CUDA-core kernels.</summary>
    private bool ProductsOnCublas(int rows) => _wide is not null && rows >= Kernels.Options.CublasMinRows;

    /// <summary>y[b] = W·x[b] (+ bias; accumulate: y +=) for every row b of the step: from
    /// <see cref="GemvOptions.CublasMinRows"/> rows on one cuBLAS product of x's bf16 parts stacked as rows
    /// (<see cref="GemvOptions.ActivationParts"/>), whose per-part results are then summed; below, launches of up to <see cref="ModelKernels.MaxRows"/> rows
    /// (each reads the weights once).</summary>
    private void Gemv(ulong weights, int n, int k, DeviceBuffer x, int xStride, int rows, DeviceBuffer? bias, DeviceBuffer y, int yStride,
        bool accumulate, CudaStream s)
    {
        if (ProductsOnCublas(rows))
        {
            _wide!.Multiply(weights, n, k, x, xStride, rows, bias, y, yStride, accumulate, s);
            return;
        }
        const int per = ModelKernels.MaxRows;
        for (int r0 = 0; r0 < rows; r0 += per)
            Kernels.Gemv(weights, n, k, x, xStride, Math.Min(per, rows - r0), bias, y, yStride, accumulate, s,
                r0 * 4L * xStride, r0 * 4L * yStride);
    }

    /// <summary>Queues one step for `rows` rows (set with <see cref="GpuKvCache.SetRows"/>), attention launches
    /// covering `planLength` keys; leaves logits [rows][vocab] in <see cref="Logits"/>. `passRows`: the rows are dense
    /// passes (runs of one sequence's consecutive positions; <see cref="DenseAttention(in KvView, DeviceBuffer, DeviceBuffer, CudaStream, bool)"/>).</summary>
    /// <remarks>A one-row step whose products are the CUDA-core kernels uses programmatic dependent launch (each
    /// kernel's blocks are placed while the one ahead of it finishes, which hides the launch gaps of a latency-bound
    /// step); steps whose products go through cuBLAS (several rows, or `--gpu-decode bf16`) do not: the tensor-core
    /// matrix-vector kernels that several rows used before cuBLAS ran slower when their blocks waited early on the
    /// previous kernel, and with cuBLAS's kernels between ours it is neither measured nor checked.</remarks>
    public void EnqueueStep(GpuKvCache cache, int rows, int planLength, CudaStream s, ILayerAttention? attention = null, bool passRows = false)
    {
        using var programmatic = Kernels.Device.ProgrammaticLaunchFor(rows == 1 && !ProductsOnCublas(rows));
        var c = Config;
        int H = c.HiddenSize, F = c.IntermediateSize, qd = c.QDim;
        float eps = (float)c.RmsNormEps;
        var k = Kernels;
        k.Embed(Weights.Embedding, cache.Tokens, rows, H, _x, H, s);
        for (int l = 0; l < c.NumLayers; l++)
        {
            var w = Weights.Layers[l];
            var kv = cache.View(l, rows, planLength);
            k.RmsNorm(_x, H, w.AttentionNorm, H, eps, _xn, H, rows, s);
            Gemv(w.Qkv.Pointer, QkvRows, H, _xn, H, rows, w.QkvBias, _qkv, QkvRows, false, s);
            k.RopeAppend(_qkv, QkvRows, c.NumHeads, c.NumKvHeads, c.HeadDim, _cos, _sin, cache.Positions, kv, Queries, s);
            if (attention is null) DenseAttention(kv, Queries, AttentionOutput, s, passRows);
            else attention.Enqueue(this, l, kv, s);
            Gemv(w.O.Pointer, H, qd, AttentionOutput, qd, rows, w.OBias, _x, H, true, s);
            k.RmsNorm(_x, H, w.MlpNorm, H, eps, _xn, H, rows, s);
            Gemv(w.GateUp.Pointer, 2 * F, H, _xn, H, rows, w.GateUpBias, _gateUp, 2 * F, false, s);
            k.SwiGlu(_gateUp, F, 2 * F, rows, _h, F, s);
            Gemv(w.Down.Pointer, H, F, _h, F, rows, w.DownBias, _x, H, true, s);
        }
        k.RmsNorm(_x, H, Weights.FinalNorm, H, eps, _xn, H, rows, s);
        Gemv(Weights.LmHead.Pointer, c.VocabSize, H, _xn, H, rows, null, Logits, c.VocabSize, false, s);
    }

    /// <summary>Runs one step now (no graph) and copies the rows' logits ([rows][vocab]) to the host.</summary>
    public void Forward(GpuKvCache cache, ReadOnlySpan<int> slots, ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions,
        Span<float> logits, CudaStream s, ILayerAttention? attention = null)
    {
        foreach (int t in tokens)
            if ((uint)t >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"Token id {t} is outside the vocabulary of {Config.VocabSize}.");
        cache.SetRows(slots, tokens, positions, s);
        EnqueueStep(cache, slots.Length, cache.Capacity, s, attention);
        s.Synchronize();
        Logits.Download(logits[..(slots.Length * Config.VocabSize)]);
    }

    public void Dispose()
    {
        _prefill?.Dispose();
        foreach (var b in new[] { _cos, _sin, _x, _xn, _qkv, Queries, AttentionOutput, _gateUp, _h, Logits }) b.Dispose();
        _wide?.Dispose();
        Workspace.Dispose();
    }
}
