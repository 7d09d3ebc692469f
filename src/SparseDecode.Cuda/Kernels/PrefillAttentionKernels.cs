using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>Host side of Cuda/Kernels/prefill_attention.cu: causal flash attention of a prefill chunk's queries
/// over the cached prefix and the chunk itself, on the tensor cores, for head sizes up to 128 that are multiples of
/// 8 (padded to 32, 64 or 128 inside the kernel), any group.</summary>
internal sealed class PrefillAttentionKernels : IDisposable
{
    public const string SourceFile = "prefill_attention.cu";
    /// <summary>Queries per block (4 warps of 16).</summary>
    public const int QueriesPerBlock = 64;
    public const int MaxHeadDim = 128;

    private readonly CudaModule _module;
    public CudaDevice Device { get; }
    public bool FromCache => _module.FromCache;
    public string CompileLog => _module.CompileLog;

    public static IEnumerable<string> KernelNames =>
        from split in new[] { "", "split_" } from d in new[] { 32, 64, 128 } select $"flash_prefill_{split}{d}";

    public PrefillAttentionKernels(CudaDevice device)
    {
        Device = device;
        _module = CudaModule.Load(device, SourceFile);
        foreach (var n in KernelNames) _ = _module[n];
    }

    public IEnumerable<(string Name, int Registers, int LocalBytes, int SharedBytes)> Resources() =>
        KernelNames.Select(n => (n, _module[n].Registers, _module[n].LocalBytes, _module[n].StaticSharedBytes));

    public static bool Supports(int headDim) => headDim % 8 == 0 && headDim is > 0 and <= MaxHeadDim;

    /// <summary>The kernel for a head size: padded to the next of 32, 64, 128; "split" for operands in 3 bf16 parts.</summary>
    public static string KernelFor(int headDim, bool split) =>
        $"flash_prefill_{(split ? "split_" : "")}{(headDim <= 32 ? 32 : headDim <= 64 ? 64 : 128)}";

    /// <summary>out[r][h·d ..] = softmax over keys 0 .. first + r of q[r][h]·k / √d, times v, for the `rows`
    /// queries at positions first .. first + rows − 1 (q bf16 parts [rows][qHeads][d]), keys and values of one slot
    /// ([kvHead][capacity][d] bf16 at kBase, vBase); out in as many bf16 parts (1 or 3).</summary>
    public void Attention(in Bf16Parts q, ulong kBase, ulong vBase, long headStride, int headDim, int qHeads, int kvHeads,
        int rows, int first, in Bf16Parts output, CudaStream s)
    {
        if (!Supports(headDim)) throw new ArgumentException($"The prefill attention takes heads of a multiple of 8 channels up to {MaxHeadDim}, not {headDim}.");
        if (q.Parts != output.Parts || q.Parts is not (1 or 3)) throw new ArgumentException($"The prefill attention takes 1 or 3 bf16 parts in and out, not {q.Parts} and {output.Parts}.");
        var a = new KernelArgs();
        a.Add(q.Pointer); a.Add(q.PartStride); a.Add(kBase); a.Add(vBase); a.Add(headStride); a.Add(headDim); a.Add(qHeads);
        a.Add(qHeads / kvHeads); a.Add(rows); a.Add(first); a.Add((float)(1 / Math.Log(2) / Math.Sqrt(headDim)));
        a.Add(output.Pointer); a.Add(output.PartStride);
        _module[KernelFor(headDim, q.Parts == 3)].Launch(((rows + QueriesPerBlock - 1) / QueriesPerBlock, qHeads, 1), 128, s, ref a);
    }

    public void Dispose() => _module.Dispose();
}
