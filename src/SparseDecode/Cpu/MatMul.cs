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
        if (tokens < MatrixWork.TileTokens || rows < MatrixWork.Strip)
        {
            // too few tokens (or rows) to fill a register tile: one matrix-vector product per token
            for (int t = 0; t < tokens; t++) Vector(w, x.Slice(t * cols, cols), y.Slice(t * rows, rows), bias);
            return;
        }
        fixed (float* xp = x, yp = y) (t_matrix ??= new MatrixWork()).Run(WorkerPool.Shared, w, xp, yp, tokens, bias);
    }
}
