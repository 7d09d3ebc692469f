using System.Buffers;
using System.Runtime.Intrinsics;
using SparseDecode.Model;
using SparseDecode.Parallelism;

namespace SparseDecode.Kernels;

/// <summary>Linear layers y = W x (+ b) with W [rows, cols] in its stored type, f32 activations.
/// Decode is a matrix-vector product bound by reading W once; prefill is a matrix-matrix product where each
/// block of W is widened to f32 once and reused for every token, so W is read once per prefill.</summary>
public static unsafe class MatMul
{
    /// <summary>y[r] = W[r]·x (+ bias[r]) for all rows, parallel over row blocks (<see cref="LinearWork"/>).</summary>
    public static void Vector(in TensorView w, ReadOnlySpan<float> x, Span<float> y, float[]? bias = null)
    {
        if (x.Length != w.Cols || y.Length != w.Rows) throw new ArgumentException($"matvec shape mismatch for {w.Name}.");
        fixed (float* xp = x, yp = y) (t_vector ??= new LinearWork()).Add(w, yp, bias).Run(WorkerPool.Shared, xp);
    }

    // one bound job per calling thread, reused: a call allocates nothing
    [ThreadStatic] private static LinearWork? t_vector;
    [ThreadStatic] private static MatrixJob? t_matrix;

    /// <summary>Y[t, r] = X[t]·W[r] (+ bias[r]): X is [tokens, cols], Y is [tokens, rows], both row-major f32.</summary>
    public static void Matrix(in TensorView w, ReadOnlySpan<float> x, Span<float> y, int tokens, float[]? bias = null)
    {
        int rows = w.Rows, cols = w.Cols;
        if (x.Length < tokens * cols || y.Length < tokens * rows) throw new ArgumentException($"matmul shape mismatch for {w.Name}.");
        if (tokens == 1)
        {
            Vector(w, x[..cols], y[..rows], bias);
            return;
        }
        fixed (float* xp = x, yp = y)
        {
            var job = t_matrix ??= new MatrixJob();
            job.Bind(w.Type, w.Data, xp, yp, cols, rows, tokens, bias);
            WorkerPool.Shared.Run(job, (rows + MatrixJob.Block - 1) / MatrixJob.Block);
            job.Bind(default, null, null, null, 0, 0, 0, null);
        }
    }

    private sealed class MatrixJob : ParallelWork
    {
        public const int Block = 16;
        private const int TokenTile = 32;
        private DType type;
        private byte* w;
        private float* x, y;
        private int cols, rows, tokens;
        private float[]? bias;

        public void Bind(DType type, byte* w, float* x, float* y, int cols, int rows, int tokens, float[]? bias)
        {
            this.type = type; this.w = w; this.x = x; this.y = y; this.cols = cols; this.rows = rows; this.tokens = tokens; this.bias = bias;
        }

        public override void Execute(int block, int worker)
        {
            int r0 = block * Block, r1 = Math.Min(rows, r0 + Block);
            float[] buffer = ArrayPool<float>.Shared.Rent(Block * cols);
            long rowBytes = (long)cols * type.SizeInBytes();
            fixed (float* wf = buffer)
            {
                for (int rr = r0; rr < r1; rr++)
                    Convert.ToSingle(type, w + rr * rowBytes, new Span<float>(wf + (long)(rr - r0) * cols, cols));
                // Tokens in tiles small enough to stay in cache while all rows of the block pass over them.
                for (int t0 = 0; t0 < tokens; t0 += TokenTile)
                {
                    int t1 = Math.Min(tokens, t0 + TokenTile);
                    int r = r0;
                    for (; r + 4 <= r1; r += 4)
                    {
                        float* w0 = wf + (long)(r - r0) * cols;
                        for (int t = t0; t < t1; t++)
                        {
                            Dot4(w0, cols, x + (long)t * cols, out float a, out float b, out float c, out float d);
                            float* yt = y + (long)t * rows + r;
                            yt[0] = a; yt[1] = b; yt[2] = c; yt[3] = d;
                        }
                    }
                    for (; r < r1; r++)
                    {
                        float* wr = wf + (long)(r - r0) * cols;
                        for (int t = t0; t < t1; t++) y[(long)t * rows + r] = Dot.F32(wr, x + (long)t * cols, cols);
                    }
                }
                if (bias is not null)
                    for (int t = 0; t < tokens; t++)
                        for (int rr = r0; rr < r1; rr++) y[(long)t * rows + rr] += bias[rr];
            }
            ArrayPool<float>.Shared.Return(buffer);
        }

        /// <summary>Four weight rows against one token: x is loaded once for four FMAs.</summary>
        private static void Dot4(float* w, int cols, float* x, out float a, out float b, out float c, out float d)
        {
            int i = 0;
            var s0 = Vector256<float>.Zero; var s1 = Vector256<float>.Zero;
            var s2 = Vector256<float>.Zero; var s3 = Vector256<float>.Zero;
            for (; i <= cols - 8; i += 8)
            {
                var xv = Vector256.Load(x + i);
                s0 = Vector256.FusedMultiplyAdd(Vector256.Load(w + i), xv, s0);
                s1 = Vector256.FusedMultiplyAdd(Vector256.Load(w + cols + i), xv, s1);
                s2 = Vector256.FusedMultiplyAdd(Vector256.Load(w + 2 * cols + i), xv, s2);
                s3 = Vector256.FusedMultiplyAdd(Vector256.Load(w + 3 * cols + i), xv, s3);
            }
            a = Vector256.Sum(s0); b = Vector256.Sum(s1); c = Vector256.Sum(s2); d = Vector256.Sum(s3);
            for (; i < cols; i++)
            {
                a += w[i] * x[i]; b += w[cols + i] * x[i]; c += w[2 * cols + i] * x[i]; d += w[3 * cols + i] * x[i];
            }
        }
    }
}
