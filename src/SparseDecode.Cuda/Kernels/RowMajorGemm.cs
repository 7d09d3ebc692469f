using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>How Y[rows][n] = X[rows][k] · W[n][k]ᵀ, every matrix row-major, is asked of column-major cuBLAS. A
/// row-major [r][c] array with row stride ld is the column-major c×r matrix with leading dimension ld, so Yᵀ (n×rows)
/// = W_cmᵀ (n×k: the k×n column-major view of W, transposed) · X_cm (k×rows): op(A) = T on W, op(B) = N on X,
/// m = n, n = rows. Pure arithmetic, so it is checked on the CPU.</summary>
internal readonly record struct RowMajorGemm(int TransA, int TransB, int M, int N, int K, int Lda, int Ldb, int Ldc)
{
    /// <summary>The cuBLAS call for `rows` rows of `k` inputs (row stride xStride) times a weight matrix of `n`
    /// rows of `k` (packed), into rows of stride yStride.</summary>
    public static RowMajorGemm ForWeights(int rows, int n, int k, int xStride, int yStride)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        if (xStride < k) throw new ArgumentException($"An input row stride of {xStride} is shorter than its {k} values.");
        if (yStride < n) throw new ArgumentException($"An output row stride of {yStride} is shorter than its {n} values.");
        return new RowMajorGemm(Cublas.OpT, Cublas.OpN, n, rows, k, k, xStride, yStride);
    }

}
