using SparseDecode.Diagnostics;
using SparseDecode.Model;
using SparseDecode.TensorParallel;

namespace SparseDecode.Tests.TensorParallel;

/// <summary>The tensor-parallel sharding plan: its slices for real shapes, that the shards of every matrix tile it
/// exactly, and that the per-rank matmuls with the row-parallel partial sums added (the all-reduce, here on the
/// host) give the unsharded layer in float64.</summary>
public sealed class ShardingPlanTests
{
    private static ModelConfig Bundled => ModelConfig.Load(Fixtures.BundledModel);

    [Fact]
    public void BundledModelSplitsInTwo()
    {
        var p = ShardingPlan.Create(Bundled, 2);   // 6 q / 2 kv heads of 64, MLP 1024, vocab 8192
        var r1 = p.Shards[1];
        Assert.Equal(new Slice(3, 3), r1.QueryHeads);
        Assert.Equal(new Slice(1, 1), r1.KvHeads);
        Assert.Equal(new Slice(192, 192), r1.QRows);
        Assert.Equal(new Slice(64, 64), r1.KRows);
        Assert.Equal(new Slice(192, 192), r1.OColumns);
        Assert.Equal(new Slice(512, 512), r1.Intermediate);
        Assert.Equal(new Slice(4096, 4096), r1.Vocab);
        Assert.Equal(4096, p.VocabStride);
        Assert.True(p.Shards[0].AddsRowParallelBias);
        Assert.False(r1.AddsRowParallelBias);
    }

    [Fact]
    public void LlamaShapesSplitOverTwoToEight()
    {
        var p8b = ShardingPlan.Create(GpuShapes.Llama31_8B, 2);
        Assert.Equal(new Slice(2048, 2048), p8b.Shards[1].QRows);
        Assert.Equal(new Slice(512, 512), p8b.Shards[1].KRows);
        Assert.Equal(new Slice(7168, 7168), p8b.Shards[1].Intermediate);
        Assert.Equal(new Slice(64128, 64128), p8b.Shards[1].Vocab);

        var p70b = ShardingPlan.Create(GpuShapes.Llama31_70B_16Layers, 8);
        var last = p70b.Shards[7];
        Assert.Equal(new Slice(56, 8), last.QueryHeads);
        Assert.Equal(new Slice(7, 1), last.KvHeads);
        Assert.Equal(new Slice(7168, 1024), last.QRows);
        Assert.Equal(new Slice(896, 128), last.VRows);
        Assert.Equal(new Slice(25088, 3584), last.Intermediate);
        Assert.Equal(16032, p70b.VocabStride);
        Assert.Equal(new Slice(112224, 16032), last.Vocab);

        var p70b4 = ShardingPlan.Create(GpuShapes.Llama31_70B_16Layers, 4);
        Assert.Equal(new Slice(4096, 2048), p70b4.Shards[2].QRows);
        Assert.Equal(new Slice(14336, 7168), p70b4.Shards[2].Intermediate);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void ShardsTileEveryMatrixExactly(int ranks)
    {
        foreach (var c in new[] { GpuShapes.Llama31_8B, GpuShapes.Llama31_70B_16Layers, Shape(hidden: 64, heads: 16, kvHeads: 8, headDim: 8, mlp: 128, vocab: 101) })
        {
            var p = ShardingPlan.Create(c, ranks);
            AssertTiles(p.Shards.Select(s => s.QRows), c.QDim);
            AssertTiles(p.Shards.Select(s => s.KRows), c.KvDim);
            AssertTiles(p.Shards.Select(s => s.VRows), c.KvDim);
            AssertTiles(p.Shards.Select(s => s.OColumns), c.QDim);
            AssertTiles(p.Shards.Select(s => s.Intermediate), c.IntermediateSize);
            AssertTiles(p.Shards.Select(s => s.Vocab), c.VocabSize);
            AssertTiles(p.Shards.Select(s => s.QueryHeads), c.NumHeads);
            AssertTiles(p.Shards.Select(s => s.KvHeads), c.NumKvHeads);
            foreach (var s in p.Shards)
            {
                // a rank's query heads are exactly the groups of its KV heads
                Assert.Equal(s.KvHeads.Offset * c.GroupSize, s.QueryHeads.Offset);
                Assert.Equal(s.KvHeads.Length * c.GroupSize, s.QueryHeads.Length);
                Assert.Equal(s.Rank * p.VocabStride, s.Vocab.Offset);
            }
            if (c.VocabSize % ranks == 0)
            {
                long whole = 2L * (c.NumLayers * ((long)(c.QDim + 2 * c.KvDim) * c.HiddenSize + (long)c.HiddenSize * c.QDim
                                                  + 3L * c.IntermediateSize * c.HiddenSize) + (long)c.VocabSize * c.HiddenSize);
                Assert.Equal(whole, Enumerable.Range(0, ranks).Sum(p.WeightBytesPerStep));
            }
        }
    }

    [Theory]
    [InlineData(3, "does not divide the model's 2 KV heads")]
    [InlineData(4, "use one of 1, 2.")]
    [InlineData(0, "between 1 and 64")]
    public void BundledModelRefusesSplitsThatDoNotTile(int ranks, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => ShardingPlan.Create(Bundled, ranks));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void RefusesAnMlpSliceOffTheKernelTile()
    {
        var c = Shape(hidden: 64, heads: 8, kvHeads: 8, headDim: 8, mlp: 8 * 12, vocab: 50);
        Assert.Null(ShardingPlan.Validate(c, 4));   // 96 / 4 = 24, a multiple of 8
        Assert.Contains("MLP width 96", ShardingPlan.Validate(c, 8));   // 12 is not
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ShardedBundledLayerEqualsTheWholeLayer(int ranks) =>
        AssertShardedLayerMatches(Bundled with { VocabSize = 96 }, ranks, seed: 11);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void ShardedGqaLayerEqualsTheWholeLayer(int ranks) =>
        AssertShardedLayerMatches(Shape(hidden: 64, heads: 16, kvHeads: 8, headDim: 8, mlp: 128, vocab: 101), ranks, seed: ranks);

    private static void AssertTiles(IEnumerable<Slice> slices, int total)
    {
        int next = 0;
        foreach (var s in slices.OrderBy(s => s.Offset))
        {
            Assert.Equal(next, s.Offset);
            Assert.True(s.Length > 0);
            next = s.End;
        }
        Assert.Equal(total, next);
    }

    /// <summary>One decoder layer's new token (q|k|v, GQA attention over a cache, o with bias, residual, SiLU MLP
    /// with bias, residual) and the lm head, once whole and once per rank through the plan's slices, the partial
    /// outputs of o and down summed over ranks and the vocabulary slices gathered at the plan's stride.</summary>
    private static void AssertShardedLayerMatches(ModelConfig c, int ranks, int seed)
    {
        var rng = new Random(seed);
        // entries of ±1/√fan-in keep every activation near 1, as trained weights do
        double[] Rand(int n, int fanIn = 1) => Enumerable.Range(0, n).Select(_ => (rng.NextDouble() * 2 - 1) / Math.Sqrt(fanIn)).ToArray();
        int h = c.HiddenSize, d = c.HeadDim, past = 7;
        var w = new
        {
            Q = new Matrix(c.QDim, h, Rand(c.QDim * h, h)), K = new Matrix(c.KvDim, h, Rand(c.KvDim * h, h)), V = new Matrix(c.KvDim, h, Rand(c.KvDim * h, h)),
            O = new Matrix(h, c.QDim, Rand(h * c.QDim, c.QDim)), OBias = Rand(h),
            Gate = new Matrix(c.IntermediateSize, h, Rand(c.IntermediateSize * h, h)), Up = new Matrix(c.IntermediateSize, h, Rand(c.IntermediateSize * h, h)),
            Down = new Matrix(h, c.IntermediateSize, Rand(h * c.IntermediateSize, c.IntermediateSize)), DownBias = Rand(h),
            Head = new Matrix(c.VocabSize, h, Rand(c.VocabSize * h, h)),
        };
        // past keys and values per KV head: [kvHead][position][d]
        var pastK = Enumerable.Range(0, c.NumKvHeads).Select(_ => Enumerable.Range(0, past).Select(_ => Rand(d)).ToArray()).ToArray();
        var pastV = Enumerable.Range(0, c.NumKvHeads).Select(_ => Enumerable.Range(0, past).Select(_ => Rand(d)).ToArray()).ToArray();
        double[] x = Rand(h);

        // the whole layer
        double[] attn = Attention(w.Q.Times(x), w.K.Times(x), w.V.Times(x), pastK, pastV, c.NumHeads, c.GroupSize, d);
        double[] h1 = Add(x, Add(w.O.Times(attn), w.OBias));
        double[] mlp = SwiGlu(w.Gate.Times(h1), w.Up.Times(h1));
        double[] expected = Add(h1, Add(w.Down.Times(mlp), w.DownBias));
        double[] expectedLogits = w.Head.Times(expected);

        // per rank, partial outputs summed as the all-reduce would
        var plan = ShardingPlan.Create(c, ranks);
        double[] o = new double[h], down = new double[h], gathered = new double[plan.VocabStride * ranks];
        foreach (var s in plan.Shards)
        {
            var kvHeads = s.KvHeads;
            double[] a = Attention(w.Q.Rows(s.QRows).Times(x), w.K.Rows(s.KRows).Times(x), w.V.Rows(s.VRows).Times(x),
                pastK[kvHeads.Offset..kvHeads.End], pastV[kvHeads.Offset..kvHeads.End], s.QueryHeads.Length, c.GroupSize, d);
            AddInto(o, w.O.Columns(s.OColumns).Times(a), s.AddsRowParallelBias ? w.OBias : null);
        }
        double[] rh1 = Add(x, o);
        foreach (var s in plan.Shards)
        {
            double[] m = SwiGlu(w.Gate.Rows(s.Intermediate).Times(rh1), w.Up.Rows(s.Intermediate).Times(rh1));
            AddInto(down, w.Down.Columns(s.Intermediate).Times(m), s.AddsRowParallelBias ? w.DownBias : null);
        }
        double[] actual = Add(rh1, down);
        foreach (var s in plan.Shards) w.Head.Rows(s.Vocab).Times(actual).CopyTo(gathered, s.Rank * plan.VocabStride);

        // only the order of the sums differs: float64 rounding, ~1e-15 relative
        for (int i = 0; i < h; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-12 * Math.Max(1, Math.Abs(expected[i])), $"hidden {i}: {expected[i]} vs {actual[i]}");
        for (int i = 0; i < c.VocabSize; i++) Assert.True(Math.Abs(expectedLogits[i] - gathered[i]) <= 1e-12 * Math.Max(1, Math.Abs(expectedLogits[i])), $"logit {i}: {expectedLogits[i]} vs {gathered[i]}");
    }

    /// <summary>Each query head attends (softmax of q·k/√d) over its KV head's past keys and the new one.</summary>
    private static double[] Attention(double[] q, double[] k, double[] v, double[][][] pastK, double[][][] pastV, int heads, int group, int d)
    {
        var output = new double[heads * d];
        for (int head = 0; head < heads; head++)
        {
            int kv = head / group;
            var keys = pastK[kv].Append(k[(kv * d)..((kv + 1) * d)]).ToArray();
            var values = pastV[kv].Append(v[(kv * d)..((kv + 1) * d)]).ToArray();
            double[] scores = keys.Select(key => Enumerable.Range(0, d).Sum(i => q[head * d + i] * key[i]) / Math.Sqrt(d)).ToArray();
            double max = scores.Max();
            double[] p = scores.Select(s => Math.Exp(s - max)).ToArray();
            double sum = p.Sum();
            for (int t = 0; t < keys.Length; t++)
                for (int i = 0; i < d; i++) output[head * d + i] += p[t] / sum * values[t][i];
        }
        return output;
    }

    private static double[] SwiGlu(double[] gate, double[] up) => gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();
    private static double[] Add(double[] a, double[] b) => a.Select((v, i) => v + b[i]).ToArray();

    private static void AddInto(double[] sum, double[] part, double[]? bias)
    {
        for (int i = 0; i < sum.Length; i++) sum[i] += part[i] + (bias?[i] ?? 0);
    }

    private static ModelConfig Shape(int hidden, int heads, int kvHeads, int headDim, int mlp, int vocab) => GpuShapes.Llama31_8B with
    {
        ArchitectureName = "test", HiddenSize = hidden, NumHeads = heads, NumKvHeads = kvHeads, HeadDim = headDim,
        IntermediateSize = mlp, VocabSize = vocab, NumLayers = 2,
    };

    /// <summary>A row-major float64 matrix with copies of a row or column slice.</summary>
    private sealed record Matrix(int RowCount, int ColumnCount, double[] Data)
    {
        public double[] Times(double[] x)
        {
            var y = new double[RowCount];
            for (int r = 0; r < RowCount; r++)
                for (int k = 0; k < ColumnCount; k++) y[r] += Data[r * ColumnCount + k] * x[k];
            return y;
        }

        public Matrix Rows(Slice s) => new(s.Length, ColumnCount, Data[(s.Offset * ColumnCount)..(s.End * ColumnCount)]);

        public Matrix Columns(Slice s)
        {
            var data = new double[RowCount * s.Length];
            for (int r = 0; r < RowCount; r++) Array.Copy(Data, r * ColumnCount + s.Offset, data, r * s.Length, s.Length);
            return new Matrix(RowCount, s.Length, data);
        }
    }
}
