using CsCheck;
using SparseDecode.Cpu;
using SparseDecode.Model;

namespace SparseDecode.Tests.Cache;

/// <summary>The q8 cache format (<see cref="DType.Q8"/>): its rounding, its dot products against naive float64 math,
/// what it refuses, and what it stores per position.</summary>
public unsafe class Q8CacheTests
{
    private static float[] Row(Random rng, int n)
    {
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 3)));
        return v;
    }

    private static float[] Stored(float[] row)
    {
        var bytes = new byte[DType.Q8.RowBytes(row.Length)];
        var back = new float[row.Length];
        fixed (byte* b = bytes)
        {
            ElementConvert.FromSingle(row, DType.Q8, b);
            ElementConvert.ToSingle(DType.Q8, b, back);
        }
        return back;
    }

    /// <summary>Each block's scale is its largest magnitude / 127, each entry the nearest multiple of it: off by at most
    /// half a step, the largest entry exact up to the scale's own rounding; a block of zeros stays zeros.</summary>
    [Theory]
    [InlineData(32, 1)]
    [InlineData(64, 2)]
    [InlineData(128, 3)]
    public void EntriesRoundToTheNearestStepOfTheirBlock(int n, int seed)
    {
        var rng = new Random(seed);
        for (int trial = 0; trial < 50; trial++)
        {
            var row = Row(rng, n);
            if (trial == 0) Array.Clear(row, 0, 32);
            var back = Stored(row);
            for (int b = 0; b < n; b += 32)
            {
                double amax = row.Skip(b).Take(32).Max(x => Math.Abs((double)x)), step = amax / 127;
                for (int i = b; i < b + 32; i++)
                {
                    Assert.True(Math.Abs(back[i] - row[i]) <= step / 2 * (1 + 1e-6) + 1e-30,
                        $"entry {i}: {row[i]:R} read back as {back[i]:R}, step {step:R}");
                    if (amax == 0) Assert.Equal(0f, back[i]);
                }
            }
        }
    }

    /// <summary>Any finite row, from subnormal to near float.MaxValue, reads back within half a step of its block
    /// (plus the smallest subnormal's rounding); a row holding a non-finite entry reads back NaN in that block.</summary>
    [Fact]
    public void AnyRowReadsBackWithinHalfAStepOrAsNaN()
    {
        // each block at one scale: any float, subnormal, ordinary, near the largest
        var block = Gen.OneOf(Gen.Float.Array[32], Gen.Float[-1e-40f, 1e-40f].Array[32], Gen.Float[-1f, 1f].Array[32], Gen.Float[-3e38f, 3e38f].Array[32]);
        block.Array[1, 4].Sample(blocks =>
        {
            var row = blocks.SelectMany(b => b).ToArray();
            var back = Stored(row);
            for (int b = 0; b < row.Length; b += 32)
            {
                var block = row.AsSpan(b, 32).ToArray();
                if (block.Any(x => !float.IsFinite(x)))
                {
                    Assert.All(back[b..(b + 32)], x => Assert.True(float.IsNaN(x)));
                    continue;
                }
                double step = block.Max(x => Math.Abs((double)x)) / 127;
                for (int i = b; i < b + 32; i++)
                    Assert.True(Math.Abs((double)back[i] - row[i]) <= step / 2 * (1 + 1e-5) + 1e-44,
                        $"entry {i}: {row[i]:R} read back as {back[i]:R}, step {step:R}");
            }
        });
    }

    /// <summary>A block holding NaN or an infinity reads back as NaN in every entry (a fault stays visible); the
    /// other blocks of the row are untouched by it.</summary>
    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void ANonFiniteEntryMakesItsBlockNaN(float bad)
    {
        var row = Row(new Random(7), 96);
        row[40] = bad;
        var back = Stored(row);
        Assert.All(back[32..64], x => Assert.True(float.IsNaN(x)));
        Assert.All(back[..32].Concat(back[64..]), x => Assert.True(float.IsFinite(x)));
        Assert.Equal(Stored(row[..32]), back[..32]);
    }

    /// <summary><see cref="Dot.Q8"/> and <see cref="Dot.AddScaledRow"/> over a q8 row equal float64 math over the
    /// entries as stored.</summary>
    [Theory]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(128)]
    [InlineData(256)]
    public void DotProductsEqualFloat64OverTheStoredEntries(int n)
    {
        var rng = new Random(n);
        var row = Row(rng, n);
        var x = Row(rng, n);
        var exact = Stored(row);
        var bytes = new byte[DType.Q8.RowBytes(n)];
        var y = Row(rng, n);
        var expected = y.Select((v, i) => v + 0.37 * exact[i]).ToArray();
        fixed (byte* b = bytes)
        fixed (float* xp = x, yp = y)
        {
            ElementConvert.FromSingle(row, DType.Q8, b);
            double dot = 0;
            for (int i = 0; i < n; i++) dot += (double)exact[i] * x[i];
            float got = Dot.Row(DType.Q8, b, xp, n);
            Assert.True(Math.Abs(got - dot) <= 1e-5 * (1 + Math.Abs(dot)), $"dot {got:R} vs f64 {dot:R}");
            Dot.AddScaledRow(DType.Q8, b, 0.37f, yp, n);
        }
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"entry {i}: {y[i]:R} vs f64 {expected[i]:R}");
    }

    [Fact]
    public void APositionTakesAQuarterOfF32PlusTheScales()
    {
        using var f32 = new KvCache(layers: 3, kvHeads: 2, headDim: 128, DType.F32, capacity: 64);
        using var q8 = new KvCache(layers: 3, kvHeads: 2, headDim: 128, DType.Q8, capacity: 64);
        Assert.Equal(2L * 3 * 2 * 128 * 4, f32.BytesPerPosition);
        Assert.Equal(2L * 3 * 2 * (128 + 4 * 4), q8.BytesPerPosition);
        Assert.Throws<InvalidOperationException>(() => DType.Q8.SizeInBytes());
    }

    /// <summary>Heads that are not whole blocks are refused where the cache or the engine is made, in one sentence
    /// that names the head size, not at the first write.</summary>
    [Fact]
    public void HeadsThatAreNotWholeBlocksAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => new KvCache(layers: 1, kvHeads: 1, headDim: 24, DType.Q8, capacity: 8));
        Assert.Contains("heads have 24", e.Message);
        e = Assert.Throws<ArgumentException>(() => CpuEngine.Load(Fixtures.Model("llama3-gqa"), DType.Q8));
        Assert.Equal("A q8 KV cache stores heads in blocks of 32 entries; this model's heads have 16 (use f32, f16 or bf16).", e.Message);
        Assert.Equal(DType.Q8, DTypeExtensions.Parse("q8_0"));
        Assert.Equal("q8", DType.Q8.Name());
    }

    /// <summary>A copy and a cut of a q8 cache keep the stored rows and rebuild the page summaries from them.</summary>
    [Fact]
    public void CloneAndTruncateKeepTheStoredRows()
    {
        using var cache = new KvCache(layers: 1, kvHeads: 1, headDim: 64, DType.Q8, capacity: 40, pageSize: 16);
        var rng = new Random(3);
        var keys = new List<float[]>();
        for (int p = 0; p < 40; p++)
        {
            var k = Row(rng, 64);
            keys.Add(Stored(k));
            cache.Write(0, p, k, Row(rng, 64));
        }
        cache.Length = 40;
        using var copy = cache.Clone();
        cache.Truncate(20);
        var read = new float[64];
        for (int p = 0; p < 40; p++)
        {
            ElementConvert.ToSingle(DType.Q8, copy.Key(0, 0, p), read);
            Assert.Equal(keys[p], read);
        }
        // page 1 now holds positions 16..19 only: its summary is theirs
        float* mn = cache.KeyMin(0, 0, 1), mx = cache.KeyMax(0, 0, 1);
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(Enumerable.Range(16, 4).Min(p => keys[p][i]), mn[i]);
            Assert.Equal(Enumerable.Range(16, 4).Max(p => keys[p][i]), mx[i]);
        }
    }
}
