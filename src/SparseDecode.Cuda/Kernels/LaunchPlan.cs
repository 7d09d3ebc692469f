using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>How work over the context is split into blocks (host arithmetic only, tested on the CPU).</summary>
internal static class LaunchPlan
{
    /// <summary>Rows (keys, index entries or pages) per block so that rows × heads × batch fills at least `waves`
    /// waves of `multiprocessors × blocksPerMultiprocessor` blocks (many small waves keep the last, partial one
    /// cheap), rounded up to `granularity` rows (what a block's warps consume per loop turn), within
    /// [minChunk, maxChunk].</summary>
    public static int Chunk(long rows, int heads, int batch, int multiprocessors, int blocksPerMultiprocessor,
        int granularity = 64, int minChunk = 64, int maxChunk = 4096, int waves = 4)
    {
        if (rows <= 0) return Math.Max(granularity, minChunk);
        long slots = (long)Math.Max(1, multiprocessors) * Math.Max(1, blocksPerMultiprocessor) * Math.Max(1, waves);
        long per = (rows * Math.Max(1, heads) * Math.Max(1, batch) + slots - 1) / slots;
        long chunk = Math.Clamp(per, minChunk, maxChunk);
        chunk = (chunk + granularity - 1) / granularity * granularity;
        return (int)chunk;
    }

    public static int Chunks(long rows, int chunk) => (int)Math.Max(1, (rows + chunk - 1) / chunk);

    /// <summary>Top-k: elements per block (256 threads × 16).</summary>
    public const int TopKTile = 4096;
    public const int TopKBins = 2048;

    public static int TopKBlocks(int maxRowLength) => Math.Max(1, (maxRowLength + TopKTile - 1) / TopKTile);

    /// <summary>Row stride of a score matrix: a multiple of 4 floats so rows load as 16-byte vectors.</summary>
    public static int ScoreStride(int rowLength) => (Math.Max(1, rowLength) + 3) / 4 * 4;
}
