using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Model;

/// <summary>How a prompt is cut for the GPU prefill: chunks of at most `chunkTokens` tokens (activations exist for
/// one chunk only, so a 128K prompt fits beside its cache), and within a chunk the rows whose logits are computed
/// together (the vocabulary-wide logits of a whole chunk would not fit).</summary>
internal static class PrefillChunks
{
    /// <summary>(offset, count) of each chunk of `total` tokens, in order, covering them exactly.</summary>
    public static IEnumerable<(int Offset, int Count)> Split(int total, int chunkTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(total);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkTokens, 1);
        for (int at = 0; at < total; at += chunkTokens) yield return (at, Math.Min(chunkTokens, total - at));
    }

    /// <summary>Rows of logits computed at once: as many as fit in `budgetBytes` of f32 logits, at least 1, at most a chunk.</summary>
    public static int LogitRows(int vocab, int chunkTokens, long budgetBytes) =>
        (int)Math.Clamp(budgetBytes / (4L * vocab), 1, chunkTokens);

    /// <summary>The chunk size to use for a model whose activations cost `bytesPerToken` per chunk row, given a
    /// preferred size, the room left on the device and the longest prompt: at most a quarter of the free memory,
    /// rounded down to a multiple of 64 (the attention's query block), at least 64, never above the prompt.</summary>
    public static int ChunkTokens(int preferred, long bytesPerToken, long freeBytes, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(preferred, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bytesPerToken, 1);
        long fit = Math.Max(64, freeBytes / 4 / bytesPerToken / 64 * 64);
        return (int)Math.Max(1, Math.Min(Math.Min(preferred, fit), capacity));
    }
}
