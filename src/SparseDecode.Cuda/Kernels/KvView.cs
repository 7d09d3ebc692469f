using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>What the decode kernels need to know of one layer's bf16 KV cache: device arrays of per-row base
/// addresses (K, V, and Quest's per-page min/max) and per-row lengths, the strides, and the length launches are
/// planned for. A row is one query: a sequence in a decode batch, or one token of a prefill chunk (rows of one
/// sequence then share its bases and see lengths position + 1: causal attention through the decode kernels).
/// <see cref="PlanLength"/> is a host number (the longest length the launch must cover), so a captured graph
/// stays valid while the device lengths grow up to it.</summary>
internal readonly record struct KvView(
    ulong KBases, ulong VBases, ulong MinBases, ulong MaxBases, ulong Lengths,
    long HeadStride, long PageHeadStride, int PageSize, int Rows, int KvHeads, int QueryHeads, int PlanLength)
{
    public int Group => QueryHeads / KvHeads;
}
