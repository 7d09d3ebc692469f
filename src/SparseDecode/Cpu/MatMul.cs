using System.Runtime.Intrinsics;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Linear layers y = W x (+ b) with W [rows, cols] in its stored type, f32 activations.
/// Decode is a matrix-vector product bound by reading W once; prefill is a blocked matrix-matrix product
/// (<see cref="MatrixWork"/>) where each block of W is widened to f32 once and reused for every token.</summary>
public static unsafe class MatMul
{
    /// <summary>y[r] = W[r]·x (+ bias[r]) for all rows, parallel over row blocks (<see cref="LinearWork"/>).</summary>
    public static void Vector(in TensorView w, ReadOnlySpan<float> x, Span<float> y, float[]? bias = null)
    {
        if (x.Length != w.Cols || y.Length != w.Rows) throw new ArgumentException($"matvec shape mismatch for {w.Name}.");
        fixed (float* xp = x, yp = y)
        {
            float* xs = xp, ys = yp; // one-entry row tables
            (t_vector ??= new LinearWork()).Add(w, &ys, bias).Run(WorkerPool.Shared, &xs, 1);
        }
    }

    // one bound job per calling thread, reused: a call allocates nothing
    [ThreadStatic] private static LinearWork? t_vector;
    [ThreadStatic] private static MatrixWork? t_matrix;

    /// <summary>Y[t, r] = X[t]·W[r] (+ bias[r]): X is [tokens, cols], Y is [tokens, rows], both row-major f32.</summary>
    public static void Matrix(in TensorView w, ReadOnlySpan<float> x, Span<float> y, int tokens, float[]? bias = null)
    {
        int rows = w.Rows, cols = w.Cols;
        if (x.Length < tokens * cols || y.Length < tokens * rows) throw new ArgumentException($"matmul shape mismatch for {w.Name}.");
        if (rows < MatrixWork.Strip)
        {
            // too few rows to fill a register strip: one matrix-vector product per token
            for (int t = 0; t < tokens; t++) Vector(w, x.Slice(t * cols, cols), y.Slice(t * rows, rows), bias);
            return;
        }
        if (tokens is > 0 and < MatrixWork.TileTokens)
        {
            // Fewer tokens than a register tile: the tile runs on them with the last one repeated, so every token's
            // product is the arithmetic it gets in a longer prefill, and a prefill's result does not depend on how
            // its tokens were split into calls (a q8 cache, whose block scales follow every last bit, shows it).
            int padded = MatrixWork.TileTokens;
            if (t_padX is null || t_padX.Length < padded * cols) t_padX = new float[padded * cols];
            if (t_padY is null || t_padY.Length < padded * rows) t_padY = new float[padded * rows];
            x[..(tokens * cols)].CopyTo(t_padX);
            for (int t = tokens; t < padded; t++) x.Slice((tokens - 1) * cols, cols).CopyTo(t_padX.AsSpan(t * cols));
            fixed (float* xp = t_padX, yp = t_padY) (t_matrix ??= new MatrixWork()).Run(WorkerPool.Shared, w, xp, yp, padded, bias);
            t_padY.AsSpan(0, tokens * rows).CopyTo(y);
            return;
        }
        fixed (float* xp = x, yp = y) (t_matrix ??= new MatrixWork()).Run(WorkerPool.Shared, w, xp, yp, tokens, bias);
    }

    // a short call's tokens padded to one register tile, and its output (per calling thread, grown as needed)
    [ThreadStatic] private static float[]? t_padX, t_padY;
}
