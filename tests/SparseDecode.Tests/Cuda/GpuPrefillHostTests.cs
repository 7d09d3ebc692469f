using SparseDecode.Cuda;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Tests.Cuda;

/// <summary>The GPU prefill's host-side arithmetic, which runs without a GPU: the row-major → column-major mapping
/// of its cuBLAS products (checked by executing cuBLAS's column-major definition against a float64 row-major
/// product), chunk and logit-row planning, and the attention kernel chosen per head size.</summary>
public sealed class GpuPrefillHostTests
{
    /// <summary>C[i + j·ldc] = Σ_p op(A)[i][p] · op(B)[p][j] over flat column-major arrays: what cublasGemmEx computes.</summary>
    private static void ColumnMajorGemm(in RowMajorGemm g, float[] a, float[] b, double[] c)
    {
        for (int i = 0; i < g.M; i++)
            for (int j = 0; j < g.N; j++)
            {
                double sum = 0;
                for (int p = 0; p < g.K; p++)
                {
                    double x = g.TransA == 1 ? a[p + i * g.Lda] : a[i + p * g.Lda];
                    double y = g.TransB == 1 ? b[j + p * g.Ldb] : b[p + j * g.Ldb];
                    sum += x * y;
                }
                c[i + j * g.Ldc] = sum;
            }
    }

    [Theory]
    [InlineData(1, 5, 8, 8, 5)]
    [InlineData(7, 12, 16, 20, 15)]
    [InlineData(3, 1, 24, 24, 4)]
    public void TheCublasMappingComputesRowMajorActivationsTimesTransposedWeights(int rows, int n, int k, int xStride, int yStride)
    {
        var rng = new Random(rows * 100 + n);
        var w = Enumerable.Range(0, n * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var x = Enumerable.Range(0, rows * xStride).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var g = RowMajorGemm.ForWeights(rows, n, k, xStride, yStride);
        var y = new double[rows * yStride];
        ColumnMajorGemm(g, w, x, y);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++)
            {
                double expected = 0;
                for (int p = 0; p < k; p++) expected += (double)w[j * k + p] * x[r * xStride + p];
                Assert.Equal(expected, y[r * yStride + j], 12);
            }
    }

    [Fact]
    public void ShortStridesAreRejected()
    {
        Assert.Throws<ArgumentException>(() => RowMajorGemm.ForWeights(2, 4, 8, 7, 4));
        Assert.Throws<ArgumentException>(() => RowMajorGemm.ForWeights(2, 4, 8, 8, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => RowMajorGemm.ForWeights(0, 4, 8, 8, 4));
    }

    [Theory]
    [InlineData(0, 4096)]
    [InlineData(1, 4096)]
    [InlineData(4096, 4096)]
    [InlineData(131072, 4096)]
    [InlineData(10000, 4096)]
    [InlineData(97, 8)]
    public void ChunksCoverThePromptInOrderWithoutOverlap(int total, int chunk)
    {
        var parts = PrefillChunks.Split(total, chunk).ToArray();
        int at = 0;
        foreach (var (offset, count) in parts)
        {
            Assert.Equal(at, offset);
            Assert.InRange(count, 1, chunk);
            at += count;
        }
        Assert.Equal(total, at);
        Assert.Equal((total + chunk - 1) / chunk, parts.Length);
    }

    [Fact]
    public void ChunkSizeFollowsMemoryAndCapacity()
    {
        Assert.Equal(4096, PrefillChunks.ChunkTokens(4096, 400_000, 100L << 30, 131072));
        Assert.Equal(200, PrefillChunks.ChunkTokens(4096, 400_000, 100L << 30, 200));      // never above the cache
        Assert.Equal(640, PrefillChunks.ChunkTokens(4096, 1_000_000, 2_600_000_000, 131072)); // a quarter of free, 64-aligned
        Assert.Equal(64, PrefillChunks.ChunkTokens(4096, 1_000_000, 1000, 131072));          // at least one query block
        Assert.Equal(523, PrefillChunks.LogitRows(128256, 4096, 256L << 20));
        Assert.Equal(1, PrefillChunks.LogitRows(128256, 4096, 16));
        Assert.Equal(48, PrefillChunks.LogitRows(8192, 48, 256L << 20));
    }

    [Theory]
    [InlineData(16, "flash_prefill_32", true)]
    [InlineData(24, "flash_prefill_32", true)]
    [InlineData(64, "flash_prefill_64", true)]
    [InlineData(96, "flash_prefill_128", true)]
    [InlineData(128, "flash_prefill_128", true)]
    [InlineData(12, null, false)]
    [InlineData(256, null, false)]
    public void HeadSizesPadToTheAttentionKernels(int headDim, string? kernel, bool supported)
    {
        Assert.Equal(supported, PrefillAttentionKernels.Supports(headDim));
        if (kernel != null)
        {
            Assert.Equal(kernel, PrefillAttentionKernels.KernelFor(headDim, split: false));
            Assert.Equal(kernel.Replace("prefill_", "prefill_split_"), PrefillAttentionKernels.KernelFor(headDim, split: true));
            Assert.Contains(kernel, PrefillAttentionKernels.KernelNames);
        }
    }
}
