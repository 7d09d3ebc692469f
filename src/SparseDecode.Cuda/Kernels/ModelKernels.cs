using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>Host side of Cuda/Kernels/model_step.cu: the parts of a decode step around attention (embedding,
/// RMSNorm, bf16 matrix-vector products of up to 8 rows on the CUDA cores, the bf16 parts and sums around the cuBLAS
/// products of wider steps, RoPE + cache append, SwiGLU, page summaries) and a dense
/// attention for any head size and group; and the same small operations over the many rows of a prefill chunk,
/// writing the bf16 operands of its tensor-core matrix products (<see cref="GpuPrefill"/>). Every method only queues work on the stream (graph-capturable).</summary>
internal sealed class ModelKernels : IDisposable
{
    public const string SourceFile = "model_step.cu";
    /// <summary>Rows one launch of the CUDA-core matrix-vector kernels takes (and the fewest a step is sized for).</summary>
    public const int MaxRows = 8;
    /// <summary>Widest head the any-shape attention takes (32 lanes × 8 channels).</summary>
    public const int MaxAnyHeadDim = 256;
    /// <summary>Keys per block of the any-shape attention.</summary>
    public const int AnyChunk = 256;

    public static readonly string[] KernelNames =
    [
        "embed_rows", "rms_norm", "gemv_b1", "gemv_b2", "gemv_b4", "gemv_b8", "gemv_b1_r1u8", "gemv_b1_r2u8", "gemv_b1_r4u4", "rope_append", "page_update", "swiglu",
        "fill_f32", "attn_any_partial", "attn_any_reduce",
        "rms_norm_bf16", "rope_append_span", "page_summaries_span", "swiglu_bf16", "add_bias", "to_bf16_parts", "sum_parts",
    ];

    private readonly CudaModule _module;
    public CudaDevice Device { get; }
    public bool FromCache => _module.FromCache;
    public string CompileLog => _module.CompileLog;

    /// <summary>Which matrix-vector kernel each launch uses.</summary>
    public GemvOptions Options { get; }

    public ModelKernels(CudaDevice device, GemvOptions? gemv = null)
    {
        Device = device;
        Options = gemv ?? new GemvOptions();
        _module = CudaModule.Load(device, SourceFile);
        foreach (var n in KernelNames) _ = _module[n];
    }

    public IEnumerable<(string Name, int Registers, int LocalBytes, int SharedBytes)> Resources() =>
        KernelNames.Select(n => (n, _module[n].Registers, _module[n].LocalBytes, _module[n].StaticSharedBytes));

    /// <summary>x[r] = the embedding rows of tokens[r] (bf16 table [vocab][hidden] → f32).</summary>
    public void Embed(DeviceBuffer table, ulong tokens, int rows, int hidden, DeviceBuffer x, int stride, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(table); a.Add(tokens); a.Add(hidden); a.Add(stride); a.Add(x);
        _module["embed_rows"].Launch((rows, 1, 1), 256, s, ref a);
    }

    public void RmsNorm(DeviceBuffer x, int stride, DeviceBuffer weight, int n, float eps, DeviceBuffer y, int yStride, int rows, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(x); a.Add(stride); a.Add(weight); a.Add(n); a.Add(eps); a.Add(y); a.Add(yStride);
        _module["rms_norm"].Launch((rows, 1, 1), 256, s, ref a);
    }

    public static readonly (string Kernel, int RowsPerBlock)[] OneRowVariants =
        [("gemv_b1", 16), ("gemv_b1_r1u8", 8), ("gemv_b1_r2u8", 16), ("gemv_b1_r4u4", 32)];

    /// <summary>Kernel and output rows per block for a launch of `rows` rows (1 to <see cref="MaxRows"/>).</summary>
    public (string Kernel, int RowsPerBlock) GemvPlan(int rows) => rows == 1 ? Options.OneRowKernel : GemvPlanOf(rows);

    /// <summary>The default kernel for `rows` rows: each reads the weights once for all of them.</summary>
    public static (string Kernel, int RowsPerBlock) GemvPlanOf(int rows) => rows switch
    {
        < 1 or > MaxRows => throw new ArgumentOutOfRangeException(nameof(rows), $"1 to {MaxRows} rows per launch of the matrix-vector kernels, got {rows}."),
        1 => ("gemv_b1", 16),
        2 => ("gemv_b2", 16),
        <= 4 => ("gemv_b4", 32),
        _ => ("gemv_b8", 32),
    };

    /// <summary>y[b][n] = W[n]·x[b] + bias[n] (accumulate: y +=) for b &lt; rows ≤ <see cref="MaxRows"/> on the CUDA
    /// cores in f32. W is bf16 [n][k], k a multiple of 8; x and y f32 with row strides; x must hold at least the
    /// planned kernel's row count (a multiple of 8 rows).</summary>
    public void Gemv(ulong weights, int n, int k, DeviceBuffer x, int xStride, int rows, DeviceBuffer? bias,
        DeviceBuffer y, int yStride, bool accumulate, CudaStream s, long xOffsetBytes = 0, long yOffsetBytes = 0)
    {
        if (k % 8 != 0) throw new ArgumentException($"The bf16 matrix-vector kernel needs rows of a multiple of 8 elements, got {k}.");
        var (kernel, perBlock) = GemvPlan(rows);
        var a = new KernelArgs();
        a.Add(weights); a.Add(n); a.Add(k); a.Add(x.At(xOffsetBytes)); a.Add(xStride); a.Add(rows); a.Add(bias);
        a.Add(y.At(yOffsetBytes)); a.Add(yStride); a.Add(accumulate ? 1 : 0);
        _module[kernel].Launch(((n + perBlock - 1) / perBlock, 1, 1), 256, s, ref a);
    }

    /// <summary>RoPE of q and k from the fused projection qkv [rows][qkvStride], q to `q` [rows][qHeads·d], k and
    /// v appended to the cache at each row's position.</summary>
    public void RopeAppend(DeviceBuffer qkv, int qkvStride, int qHeads, int kvHeads, int headDim, DeviceBuffer cos,
        DeviceBuffer sin, ulong positions, in KvView kv, DeviceBuffer q, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(qkv); a.Add(qkvStride); a.Add(qHeads); a.Add(kvHeads); a.Add(headDim); a.Add(cos); a.Add(sin);
        a.Add(positions); a.Add(kv.KBases); a.Add(kv.VBases); a.Add(kv.HeadStride); a.Add(q);
        _module["rope_append"].Launch((kv.Rows, qHeads + kvHeads, 1), 64, s, ref a);
    }

    /// <summary>Refreshes Quest's min/max summary of the page each row's new key went into.</summary>
    public void PageUpdate(in KvView kv, ulong positions, int headDim, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(kv.KBases); a.Add(kv.MinBases); a.Add(kv.MaxBases); a.Add(positions); a.Add(kv.HeadStride);
        a.Add(kv.PageHeadStride); a.Add(kv.PageSize); a.Add(headDim); a.Add(kv.Rows);
        _module["page_update"].Launch((kv.Rows, kv.KvHeads, 1), headDim, s, ref a);
    }

    public void SwiGlu(DeviceBuffer gateUp, int f, int guStride, int rows, DeviceBuffer h, int hStride, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(gateUp); a.Add(f); a.Add(guStride); a.Add(rows); a.Add(h); a.Add(hStride);
        _module["swiglu"].Launch((GridStrideBlocks((long)rows * f), 1, 1), 256, s, ref a);
    }

    /// <summary>rms_norm for `rows` rows whose result feeds bf16 matrix products: y as `parts` bf16 parts (1: y rounded
    /// to bf16; 3: hi + mid + lo, all of y's 24 mantissa bits), part p at y + p·partStride elements.</summary>
    public void RmsNormBf16(ulong x, int stride, DeviceBuffer weight, int n, float eps, in Bf16Parts y, int yStride, int rows, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(x); a.Add(stride); a.Add(weight); a.Add(n); a.Add(eps); a.Add(y.Pointer); a.Add(y.PartStride); a.Add(y.Parts); a.Add(yStride);
        _module["rms_norm_bf16"].Launch((rows, 1, 1), 256, s, ref a);
    }

    /// <summary>RoPE of `rows` consecutive tokens of one sequence from position `first`: k and v appended to the
    /// slot's cache arrays (kBase, vBase), q to bf16 parts [rows][qHeads·d].</summary>
    public void RopeAppendSpan(ulong qkv, int qkvStride, int qHeads, int kvHeads, int headDim, DeviceBuffer cos,
        DeviceBuffer sin, int first, int rows, ulong kBase, ulong vBase, long headStride, in Bf16Parts q, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(qkv); a.Add(qkvStride); a.Add(qHeads); a.Add(kvHeads); a.Add(headDim); a.Add(cos); a.Add(sin); a.Add(first);
        a.Add(kBase); a.Add(vBase); a.Add(headStride); a.Add(q.Pointer); a.Add(q.PartStride); a.Add(q.Parts);
        _module["rope_append_span"].Launch((rows, qHeads + kvHeads, 1), 64, s, ref a);
    }

    /// <summary>Quest's min/max summaries of every page that keys first .. last of one slot touch, each over its
    /// keys from the page's start (so a page the chunk completes is exact, and a partial one is what the decode
    /// step's per-token update would have left).</summary>
    public void PageSummariesSpan(ulong kBase, ulong minBase, ulong maxBase, long headStride, long pageHeadStride, int pageSize,
        int headDim, int kvHeads, int first, int last, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(kBase); a.Add(minBase); a.Add(maxBase); a.Add(headStride); a.Add(pageHeadStride); a.Add(pageSize);
        a.Add(headDim); a.Add(first); a.Add(last);
        _module["page_summaries_span"].Launch((last / pageSize - first / pageSize + 1, kvHeads, 1), headDim, s, ref a);
    }

    /// <summary>swiglu whose result feeds the down projection's bf16 matrix products, as bf16 parts.</summary>
    public void SwiGluBf16(DeviceBuffer gateUp, int f, int guStride, int rows, in Bf16Parts h, int hStride, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(gateUp); a.Add(f); a.Add(guStride); a.Add(rows); a.Add(h.Pointer); a.Add(h.PartStride); a.Add(h.Parts); a.Add(hStride);
        _module["swiglu_bf16"].Launch((GridStrideBlocks((long)rows * f), 1, 1), 256, s, ref a);
    }

    /// <summary>x [rows][xStride] f32 as `parts` bf16 parts laid out [part][rows][k] from `y` (part stride rows·k): the
    /// operand of a wide product (<see cref="SumParts"/>).</summary>
    public void ToBf16Parts(DeviceBuffer x, int xStride, int k, int rows, ulong y, int parts, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(x); a.Add(xStride); a.Add(k); a.Add(rows); a.Add(y); a.Add(parts);
        _module["to_bf16_parts"].Launch((GridStrideBlocks((long)rows * k), 1, 1), 256, s, ref a);
    }

    /// <summary>y[r][j] = Σ_p partial[p][r][j] + bias[j] (accumulate: y +=) for `rows` rows of n values, partial
    /// [parts][rows][n]: the products of <see cref="ToBf16Parts"/>' parts summed, the smallest first.</summary>
    public void SumParts(ulong partial, int n, int rows, int parts, DeviceBuffer? bias, DeviceBuffer y, int yStride, bool accumulate, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(partial); a.Add(n); a.Add(rows); a.Add(parts); a.Add(bias); a.Add(y); a.Add(yStride); a.Add(accumulate ? 1 : 0);
        _module["sum_parts"].Launch((GridStrideBlocks((long)rows * n), 1, 1), 256, s, ref a);
    }

    /// <summary>y[r][j] += bias[j] for `rows` rows of n values.</summary>
    public void AddBias(DeviceBuffer y, int n, int yStride, int rows, DeviceBuffer bias, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(y); a.Add(n); a.Add(yStride); a.Add(rows); a.Add(bias);
        _module["add_bias"].Launch((GridStrideBlocks((long)rows * n), 1, 1), 256, s, ref a);
    }

    private int GridStrideBlocks(long n) => (int)Math.Min(Device.Multiprocessors * 8L, (n + 255) / 256);

    public void Fill(DeviceBuffer p, long count, float value, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(p); a.Add(count); a.Add(value);
        _module["fill_f32"].Launch((Device.Multiprocessors * 8, 1, 1), 256, s, ref a);
    }

    /// <summary>Decode attention of each row's query over its first `length` keys (dense), or over index lists
    /// [rows][listHeads][indexCount] (per query head or per KV head; entries &lt; 0 skipped), any head size ≤ 256
    /// and any group; chunks of <see cref="AnyChunk"/> keys (or entries) planned for kv.PlanLength.</summary>
    public void AttentionAny(in KvView kv, int headDim, DeviceBuffer q, DeviceBuffer output, DecodeKernels.AttentionWorkspace ws,
        CudaStream s, DeviceBuffer? indices = null, int indexCount = 0, bool perQueryHead = false)
    {
        if (headDim > MaxAnyHeadDim) throw new ArgumentException($"Heads wider than {MaxAnyHeadDim} are not supported on the GPU.");
        int chunks = AnyChunks(indices is null ? kv.PlanLength : indexCount);
        if (chunks > ws.MaxChunks) throw new ArgumentException($"Attention needs {chunks} chunks; the workspace holds {ws.MaxChunks}.");
        var a = new KernelArgs();
        a.Add(kv.KBases); a.Add(kv.VBases); a.Add(kv.Lengths); a.Add(kv.HeadStride); a.Add(headDim); a.Add(q);
        a.Add(kv.QueryHeads); a.Add(kv.Group); a.Add(AnyChunk); a.Add(chunks);
        a.Add((float)(1 / Math.Log(2) / Math.Sqrt(headDim))); a.Add(ws.M); a.Add(ws.L); a.Add(ws.O);
        a.Add(indices); a.Add(indexCount); a.Add(perQueryHead ? 1 : 0);
        _module["attn_any_partial"].Launch((chunks, kv.QueryHeads, kv.Rows), 128, s, ref a);
        var r = new KernelArgs();
        r.Add(ws.M); r.Add(ws.L); r.Add(ws.O); r.Add(chunks); r.Add(kv.QueryHeads); r.Add(headDim); r.Add(output);
        _module["attn_any_reduce"].Launch((kv.QueryHeads, kv.Rows, 1), 128, s, ref r);
    }

    public static int AnyChunks(int planLength) => LaunchPlan.Chunks(planLength, AnyChunk);

    public void Dispose() => _module.Dispose();
}
