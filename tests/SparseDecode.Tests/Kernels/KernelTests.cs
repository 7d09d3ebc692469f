using System.Runtime.InteropServices;
using SparseDecode.Cpu;
using SparseDecode.Model;

namespace SparseDecode.Tests.KernelChecks;

/// <summary>CPU kernels against naive float64 math on random inputs.</summary>
public unsafe class KernelTests
{
    private static float[] RandomVector(Random rng, int n, float scale = 1f)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        return v;
    }

    /// <summary>A matrix stored in the given type, plus its exact f64 values after rounding to that type.</summary>
    private static (TensorView view, double[] exact, nint memory) Matrix(Random rng, int rows, int cols, DType type)
    {
        var f = RandomVector(rng, rows * cols);
        nint mem = (nint)NativeMemory.AlignedAlloc((nuint)(rows * cols * type.SizeInBytes()), 64);
        SparseDecode.Model.ElementConvert.FromSingle(f, type, (byte*)mem);
        var back = new float[rows * cols];
        SparseDecode.Model.ElementConvert.ToSingle(type, (byte*)mem, back);
        return (new TensorView("w", type, [rows, cols], (byte*)mem), back.Select(x => (double)x).ToArray(), mem);
    }

    [Theory]
    [InlineData(DType.F32, 37, 75)]
    [InlineData(DType.BF16, 130, 64)]
    [InlineData(DType.BF16, 1031, 390)]
    [InlineData(DType.BF16, 7, 75)]
    [InlineData(DType.F16, 65, 300)]
    public void MatVecEqualsNaive(DType type, int rows, int cols)
    {
        var rng = new Random(rows * cols);
        var (w, exact, mem) = Matrix(rng, rows, cols, type);
        try
        {
            var x = RandomVector(rng, cols);
            var bias = RandomVector(rng, rows);
            var y = new float[rows];
            MatMul.Vector(w, x, y, bias);
            for (int r = 0; r < rows; r++)
            {
                double s = bias[r];
                for (int c = 0; c < cols; c++) s += exact[r * cols + c] * x[c];
                Assert.True(Math.Abs(y[r] - s) <= 1e-4 * (1 + Math.Abs(s)), $"row {r}: {y[r]} vs {s}");
            }
        }
        finally { NativeMemory.AlignedFree((void*)mem); }
    }

    /// <summary>The rows of a batched product (a decode step of several sequences) equal each input's product
    /// alone, bit for bit: bf16 rows of lengths that reach the two-input kernel's 16- and 8-word loops and its
    /// scalar tail, an odd bf16 length (not split), f16 and f32; an odd batch, so that one input runs alone; with
    /// bias, accumulating into the output.</summary>
    [Theory]
    [InlineData(DType.BF16, 40, 64, 5)]
    [InlineData(DType.BF16, 33, 90, 3)]
    [InlineData(DType.BF16, 21, 75, 4)]
    [InlineData(DType.F16, 19, 300, 3)]
    [InlineData(DType.F32, 23, 77, 5)]
    public void BatchedRowsEqualEachInputAloneBitForBit(DType type, int rows, int cols, int batch)
    {
        var rng = new Random(rows + cols + batch);
        var (w, _, mem) = Matrix(rng, rows, cols, type);
        try
        {
            var x = RandomVector(rng, batch * cols);
            var bias = RandomVector(rng, rows);
            var start = RandomVector(rng, batch * rows);
            var together = (float[])start.Clone();
            var alone = (float[])start.Clone();
            var pool = new SparseDecode.Cpu.WorkerPool(2);
            var work = new LinearWork();
            fixed (float* xp = x, tp = together, ap = alone)
            {
                float** xs = stackalloc float*[batch], ys = stackalloc float*[batch];
                for (int b = 0; b < batch; b++)
                {
                    xs[b] = xp + b * cols;
                    ys[b] = tp + b * rows;
                }
                work.Add(w, ys, bias, accumulate: true).Run(pool, xs, batch);
                for (int b = 0; b < batch; b++)
                {
                    float* xb = xp + b * cols, yb = ap + b * rows;
                    work.Add(w, &yb, bias, accumulate: true).Run(pool, &xb, 1);
                }
            }
            for (int i = 0; i < together.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(together[i]) == BitConverter.SingleToInt32Bits(alone[i]),
                    $"input {i / rows}, row {i % rows}: {together[i]:R} batched vs {alone[i]:R} alone");
        }
        finally { NativeMemory.AlignedFree((void*)mem); }
    }

    /// <summary>Shapes around the blocked product's edges: tokens below, at and off its 6-token tile (the last
    /// tile shifted back), rows below, at and off its 16-row strip (the last strip shifted back), depths below,
    /// at and across its 256-column block; with and without bias.</summary>
    [Theory]
    [InlineData(DType.F32, 33, 19, 7, false)]
    [InlineData(DType.BF16, 64, 72, 5, true)]
    [InlineData(DType.BF16, 16, 256, 6, true)]
    [InlineData(DType.BF16, 17, 257, 13, false)]
    [InlineData(DType.BF16, 130, 600, 37, true)]
    [InlineData(DType.F16, 45, 300, 512, true)]
    [InlineData(DType.F32, 7, 40, 20, true)]
    [InlineData(DType.F32, 100, 513, 2, false)]
    [InlineData(DType.BF16, 64, 300, 1, true)]
    [InlineData(DType.F16, 33, 75, 5, false)]
    public void MatMulEqualsNaive(DType type, int rows, int cols, int tokens, bool withBias)
    {
        var rng = new Random(rows + cols + tokens);
        var (w, exact, mem) = Matrix(rng, rows, cols, type);
        try
        {
            var x = RandomVector(rng, tokens * cols);
            float[]? bias = withBias ? RandomVector(rng, rows) : null;
            var y = new float[tokens * rows + 3];
            y.AsSpan(tokens * rows).Fill(42f);
            MatMul.Matrix(w, x, y, tokens, bias);
            for (int t = 0; t < tokens; t++)
                for (int r = 0; r < rows; r++)
                {
                    double s = bias?[r] ?? 0;
                    for (int c = 0; c < cols; c++) s += exact[r * cols + c] * x[t * cols + c];
                    Assert.True(Math.Abs(y[t * rows + r] - s) <= 1e-4 * (1 + Math.Abs(s)), $"token {t}, row {r}: {y[t * rows + r]} vs {s}");
                }
            Assert.All(y[(tokens * rows)..], v => Assert.Equal(42f, v)); // nothing written past the output
        }
        finally { NativeMemory.AlignedFree((void*)mem); }
    }

    /// <summary>A token's product is the same, bit for bit, whatever number of tokens its call carries: fewer than a
    /// register tile (padded to one), a whole tile, a shifted last tile. So a prefill's result does not depend on
    /// how its tokens are split into calls.</summary>
    [Theory]
    [InlineData(DType.BF16, 40, 300)]
    [InlineData(DType.F32, 17, 64)]
    public void ATokensProductDoesNotDependOnTheTokensBesideIt(DType type, int rows, int cols)
    {
        var rng = new Random(rows * 7 + cols);
        var (w, _, mem) = Matrix(rng, rows, cols, type);
        try
        {
            const int all = 13;
            var x = RandomVector(rng, all * cols);
            var bias = RandomVector(rng, rows);
            var full = new float[all * rows];
            MatMul.Matrix(w, x, full, all, bias);
            for (int tokens = 1; tokens < all; tokens++)
                for (int from = 0; from + tokens <= all; from += 4)
                {
                    var part = new float[tokens * rows];
                    MatMul.Matrix(w, x.AsSpan(from * cols, tokens * cols), part, tokens, bias);
                    for (int i = 0; i < part.Length; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(part[i]) == BitConverter.SingleToInt32Bits(full[from * rows + i]),
                            $"{tokens} tokens from {from}: token {from + i / rows}, row {i % rows}: {part[i]:R} vs {full[from * rows + i]:R} among {all}");
                }
        }
        finally { NativeMemory.AlignedFree((void*)mem); }
    }

    [Fact]
    public void OneLinearRegionComputesEveryProductAndAddsInPlace()
    {
        var rng = new Random(5);
        int cols = 96;
        var (a, ea, ma) = Matrix(rng, 100, cols, DType.BF16);
        var (b, eb, mb) = Matrix(rng, 36, cols, DType.F32);
        var (c, ec, mc) = Matrix(rng, 52, cols, DType.BF16);
        try
        {
            var x = RandomVector(rng, cols);
            var bias = RandomVector(rng, 36);
            var ya = new float[100];
            var yb = new float[36];
            var yc = RandomVector(rng, 52); // accumulated into
            var before = (float[])yc.Clone();
            fixed (float* xp = x, pa = ya, pb = yb, pc = yc)
            {
                float* xs = xp, sa = pa, sb = pb, sc = pc;
                new LinearWork().Add(a, &sa).Add(b, &sb, bias).Add(c, &sc, accumulate: true).Run(new SparseDecode.Cpu.WorkerPool(2), &xs, 1);
            }
            void Check(float[] y, double[] exact, int rows, Func<int, double> start)
            {
                for (int r = 0; r < rows; r++)
                {
                    double s = start(r);
                    for (int i = 0; i < cols; i++) s += exact[r * cols + i] * x[i];
                    Assert.True(Math.Abs(y[r] - s) <= 1e-4 * (1 + Math.Abs(s)), $"row {r}: {y[r]} vs {s}");
                }
            }
            Check(ya, ea, 100, _ => 0);
            Check(yb, eb, 36, r => bias[r]);
            Check(yc, ec, 52, r => before[r]);
        }
        finally
        {
            NativeMemory.AlignedFree((void*)ma);
            NativeMemory.AlignedFree((void*)mb);
            NativeMemory.AlignedFree((void*)mc);
        }
    }

    [Fact]
    public void GatedMlpEqualsSiluOfGateTimesUp()
    {
        var rng = new Random(6);
        int rows = 200, cols = 64;
        var (g, eg, mg) = Matrix(rng, rows, cols, DType.BF16);
        var (u, eu, mu) = Matrix(rng, rows, cols, DType.BF16);
        try
        {
            var x = RandomVector(rng, cols, 3f);
            var gate = new float[rows];
            var up = new float[rows];
            fixed (float* xp = x, gp = gate, upp = up)
            {
                float* xs = xp, gs = gp, us = upp;
                new GatedMlpWork().Run(new SparseDecode.Cpu.WorkerPool(2), g, u, null, null, &xs, &gs, &us, 1);
            }
            for (int r = 0; r < rows; r++)
            {
                double sg = 0, su = 0;
                for (int i = 0; i < cols; i++) { sg += eg[r * cols + i] * x[i]; su += eu[r * cols + i] * x[i]; }
                double expected = sg / (1 + Math.Exp(-sg)) * su;
                Assert.True(Math.Abs(gate[r] - expected) <= 1e-4 * (1 + Math.Abs(expected)), $"row {r}: {gate[r]} vs {expected}");
            }
        }
        finally
        {
            NativeMemory.AlignedFree((void*)mg);
            NativeMemory.AlignedFree((void*)mu);
        }
    }

    [Fact]
    public void Bf16RoundsToNearestEven()
    {
        Assert.Equal(0x3F80, SparseDecode.Model.ElementConvert.SingleToBf16(1.0f));
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1.0).
        Assert.Equal(0x3F80, SparseDecode.Model.ElementConvert.SingleToBf16(1.00390625f));
        // 1 + 3·2^-8 is halfway as well: it rounds up to the even neighbour 1 + 2^-6.
        Assert.Equal(0x3F82, SparseDecode.Model.ElementConvert.SingleToBf16(1.01171875f));
        Assert.True(float.IsNaN(SparseDecode.Model.ElementConvert.Bf16ToSingle(SparseDecode.Model.ElementConvert.SingleToBf16(float.NaN))));
    }

    [Fact]
    public void RmsNormEqualsNaive()
    {
        var rng = new Random(3);
        var x = RandomVector(rng, 96, 3);
        var w = RandomVector(rng, 96);
        var y = new float[96];
        Norms.RmsNorm(x, w, 1e-5f, y);
        double ms = x.Sum(v => (double)v * v) / x.Length;
        for (int i = 0; i < x.Length; i++)
            Assert.Equal(x[i] / Math.Sqrt(ms + 1e-5) * w[i], y[i], 5);
    }

    [Fact]
    public void RopeRotatesHalves()
    {
        var scaling = new RopeScaling(RopeType.Default, 10000);
        var rope = new Rope(scaling, 8, 64);
        var v = new float[] { 1, 2, 3, 4, 5, 6, 7, 8 };
        var orig = (float[])v.Clone();
        rope.Apply(v, 1, 10);
        double[] inv = scaling.InverseFrequencies(8);
        for (int i = 0; i < 4; i++)
        {
            double a = (float)inv[i] * 10f;
            Assert.Equal(orig[i] * Math.Cos(a) - orig[i + 4] * Math.Sin(a), v[i], 5);
            Assert.Equal(orig[i + 4] * Math.Cos(a) + orig[i] * Math.Sin(a), v[i + 4], 5);
        }
    }

    [Fact]
    public void Llama3ScalingKeepsHighAndDividesLowFrequencies()
    {
        var plain = new RopeScaling(RopeType.Default, 500000).InverseFrequencies(128);
        var scaled = new RopeScaling(RopeType.Llama3, 500000, 8, 1, 4, 8192).InverseFrequencies(128);
        Assert.Equal(plain[0], scaled[0]);                 // wavelength 2π: far below 8192/4, unchanged
        Assert.Equal(plain[63] / 8, scaled[63], 12);       // wavelength far above 8192: divided by the factor
    }

    [Theory]
    [InlineData(1000, 10)]
    [InlineData(257, 256)]
    [InlineData(50, 50)]
    [InlineData(4096, 1)]
    [InlineData(7936, 159)]
    [InlineData(803, 100)]
    public void TopKPicksExactlyTheLargest(int n, int k)
    {
        var rng = new Random(n + k);
        var s = RandomVector(rng, n);
        for (int i = 0; i < n / 10; i++) s[rng.Next(n)] = s[rng.Next(n)];   // ties
        var result = new int[k];
        int count = TopK.Select(s, default, k, result, new float[n]);
        Assert.Equal(Math.Min(k, n), count);
        var expected = s.Select((v, i) => (v, i)).OrderByDescending(p => p.v).Take(k).Select(p => p.v).Order().ToArray();
        Assert.Equal(expected, result.Take(count).Select(i => s[i]).Order().ToArray());
        Assert.True(result.Take(count).SequenceEqual(result.Take(count).Order()), "ascending positions");
        Assert.Equal(count, result.Take(count).Distinct().Count());
    }

    /// <summary>The k-th largest through the sampled threshold (the path for small k) equals the k-th of the sorted
    /// values, NaN counting as −∞, over ties, infinities, NaNs, sorted and periodic inputs (where the sample can
    /// guess too high and the search falls back to all values), for k from 1 to the whole length.</summary>
    [Fact]
    public void KthLargestEqualsTheSortedValue()
    {
        var rng = new Random(11);
        foreach (int n in new[] { 1, 7, 8, 9, 100, 1001, 7936 })
            foreach (string shape in new[] { "random", "ascending", "period8" })
            {
                var a = shape switch
                {
                    "ascending" => Enumerable.Range(0, n).Select(i => (float)i).ToArray(),
                    "period8" => Enumerable.Range(0, n).Select(i => i % 8 == 0 ? 100f + i : (float)rng.NextDouble()).ToArray(),
                    _ => RandomVector(rng, n),
                };
                for (int i = 0; i < n / 5; i++) a[rng.Next(n)] = a[rng.Next(n)];
                if (n > 8) (a[3], a[5], a[n - 1]) = (float.NaN, float.NegativeInfinity, float.PositiveInfinity);
                var sorted = a.Select(x => float.IsNaN(x) ? float.NegativeInfinity : x).OrderByDescending(x => x).ToArray();
                foreach (int k in new[] { 1, 2, n / 50 + 1, n / 3 + 1, n }.Where(k => k <= n).Distinct())
                    Assert.True(sorted[k - 1] == TopK.KthLargestOf(a, k, new float[n]), $"{shape} n {n} k {k}");
            }
    }
}
