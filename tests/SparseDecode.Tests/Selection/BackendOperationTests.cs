using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Tests.Selection;

/// <summary>The attention kernel over an index set and the backend operations the selectors are built on,
/// against naive f64 arithmetic and naive set algebra.</summary>
public unsafe class BackendOperationTests
{
    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.BF16, 1e-5)]
    [InlineData(DType.F16, 1e-5)]
    [InlineData(DType.Q8, 1e-5)]
    public void SparseAttentionEqualsNaiveSoftmaxOverTheSameIndices(DType type, double tolerance)
    {
        using var s = new SyntheticAttention(layers: 2, heads: 4, kvHeads: 2, headDim: 32, capacity: 300, seed: 1, type);
        s.FillTo(300);
        s.RandomQueries(0.5f);
        var rng = new Random(2);
        var scratch = new float[300];
        var output = new float[s.D];
        for (int trial = 0; trial < 20; trial++)
        {
            int layer = trial % 2, head = rng.Next(4), count = 1 + rng.Next(299);
            var indices = Enumerable.Range(0, 300).OrderBy(_ => rng.Next()).Take(count).Order().ToArray();
            fixed (float* q = s.Queries[layer], o = output)
                AttentionKernels.Attend(s.Cache, layer, head / 2, q + head * s.D, indices, s.Scale, scratch, o);
            var naive = s.NaiveAttend(layer, head, indices);
            for (int i = 0; i < s.D; i++)
                Assert.True(Math.Abs(output[i] - naive[i]) <= tolerance * (1 + Math.Abs(naive[i])),
                    $"{type} trial {trial} channel {i}: kernel {output[i]} vs f64 {naive[i]}");
        }
    }

    /// <summary>Grouped decode attention (each K/V row read once for the query heads of a KV head, positions split
    /// into parts that combine) equals naive f64 softmax attention per query head: dense over a context long enough
    /// to be split, and sparse over one list per KV head. The bf16 rows cover the register kernel's cases: groups of
    /// 1 to 5 query heads (its 4-query slices and their remainders), head sizes of one to eight 16-entry slices, and
    /// lengths that are not whole blocks of 8 or 64 rows; the q8 rows groups of 1 to 5 and heads of one to four
    /// 32-entry blocks.</summary>
    [Theory]
    [InlineData(DType.F32, 2100, 6, 2, 32)]
    [InlineData(DType.BF16, 2100, 6, 2, 32)]
    [InlineData(DType.F16, 37, 6, 2, 32)]
    [InlineData(DType.BF16, 1337, 8, 2, 128)]
    [InlineData(DType.BF16, 77, 2, 2, 16)]
    [InlineData(DType.BF16, 530, 10, 2, 48)]
    [InlineData(DType.BF16, 5, 4, 2, 64)]
    [InlineData(DType.Q8, 2100, 6, 2, 32)]
    [InlineData(DType.Q8, 1337, 8, 2, 128)]
    [InlineData(DType.Q8, 530, 10, 2, 64)]
    [InlineData(DType.Q8, 77, 2, 2, 96)]
    [InlineData(DType.Q8, 5, 4, 2, 64)]
    public void GroupedAttentionEqualsNaiveSoftmaxPerQueryHead(DType type, int n, int heads, int kvHeads, int headDim)
    {
        using var s = new SyntheticAttention(layers: 2, heads: heads, kvHeads: kvHeads, headDim: headDim, capacity: n, seed: 4, type);
        s.FillTo(n, sigma: 2);
        s.RandomQueries(0.7f);
        var grouped = new GroupedDecodeAttention(heads, kvHeads, headDim, capacity: 64);
        var att = new float[heads * headDim];
        int group = heads / kvHeads;
        var rng = new Random(5);
        var lists = Enumerable.Range(0, kvHeads).Select(_ => Enumerable.Range(0, n).OrderBy(_ => rng.Next()).Take(Math.Max(1, n * 2 / 3)).Order().ToArray()).ToArray();
        var selection = new LayerSelection(kvHeads, n, SelectionGranularity.KvHead);
        for (int h = 0; h < kvHeads; h++)
        {
            lists[h].CopyTo(selection.Buffer(h));
            selection.SetCount(h, lists[h].Length);
        }
        foreach (bool sparse in new[] { false, true })
            for (int layer = 0; layer < 2; layer++)
            {
                selection.Dense = !sparse;
                grouped.Run(s.Cache, layer, s.Queries[layer], att, n, s.Scale, selection);
                for (int qh = 0; qh < heads; qh++)
                {
                    var naive = s.NaiveAttend(layer, qh, sparse ? lists[qh / group] : Enumerable.Range(0, n).ToArray());
                    for (int i = 0; i < headDim; i++)
                        Assert.True(Math.Abs(att[qh * headDim + i] - naive[i]) <= 1e-5 * (1 + Math.Abs(naive[i])),
                            $"{type} n {n} sparse {sparse} layer {layer} head {qh} channel {i}: {att[qh * headDim + i]} vs f64 {naive[i]}");
                }
            }
        Assert.True(n < GroupedDecodeAttention.MinPartLength * 2 || grouped.PartsFor(n) > 1 || Environment.ProcessorCount == 1,
            "a context of several parts must be split, or the combination is not tested");
    }

    [Theory]
    [InlineData(DType.F32, SelectionGranularity.QueryHead)]
    [InlineData(DType.F32, SelectionGranularity.KvHead)]
    [InlineData(DType.BF16, SelectionGranularity.QueryHead)]
    [InlineData(DType.F16, SelectionGranularity.KvHead)]
    [InlineData(DType.Q8, SelectionGranularity.QueryHead)]
    [InlineData(DType.Q8, SelectionGranularity.KvHead)]
    public void PageBoundsAreUpperBoundsOfEveryKeyScoreInThePage(DType type, SelectionGranularity g)
    {
        using var s = new SyntheticAttention(layers: 1, heads: 4, kvHeads: 2, headDim: 64, capacity: 1000, seed: 3, type);
        s.FillTo(993, sigma: 2);
        s.RandomQueries(2);
        int n = 993, pages = (n + 15) / 16; // the last page holds one key
        s.Backend.Bind(0, s.Queries[0], n);
        var bounds = new float[pages];
        var scores = new float[n];
        for (int h = 0; h < ((ISelectionBackend)s.Backend).HeadsFor(g); h++)
        {
            s.Backend.PageUpperBounds(h, g, bounds);
            s.Backend.ScoreAll(h, g, scores);
            int first = g == SelectionGranularity.QueryHead ? h : 2 * h;
            var exact = Enumerable.Range(first, g == SelectionGranularity.QueryHead ? 1 : 2).Select(qh => s.NaiveScores(0, qh, n)).ToArray();
            for (int p = 0; p < n; p++)
            {
                Assert.True(scores[p] <= bounds[p / 16], $"head {h} position {p}: score {scores[p]} above its page bound {bounds[p / 16]}");
                // It also bounds the f64 score of the key as stored.
                foreach (var e in exact) Assert.True(e[p] <= bounds[p / 16], $"head {h} position {p}: f64 score {e[p]} above {bounds[p / 16]}");
            }
            // A one-key page's bound is that key's score, up to the rounding slack.
            Assert.InRange(bounds[pages - 1] - scores[n - 1], 0f, 1e-3f);
        }
        // Index cost: a page summary counts as one key.
        Assert.Equal(((ISelectionBackend)s.Backend).HeadsFor(g) * (pages + n), s.Backend.KeysScored);
    }

    /// <summary>The backend computes a KV head's all-position scores and page bounds for its whole group at once and
    /// keeps them for the layer: each head's numbers must be exactly those of scoring that head alone, in any order
    /// of asking, a KV head's the maximum of its query heads', and a new Bind (another layer) must not see the last
    /// layer's. Long enough to be split over the cores.</summary>
    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F32)]
    [InlineData(DType.Q8)]
    public void GroupScoresAndBoundsEqualEachHeadAlone(DType type)
    {
        const int n = 3000, heads = 6, d = 32;
        using var s = new SyntheticAttention(layers: 2, heads: heads, kvHeads: 2, headDim: d, capacity: n, seed: 9, type);
        s.FillTo(n, sigma: 2);
        s.RandomQueries(1);
        int pages = (n + 15) / 16;
        var got = new float[n];
        var alone = new float[n];
        var bound = new float[pages];
        foreach (int layer in new[] { 1, 0 })
        {
            s.Backend.Bind(layer, s.Queries[layer], n);
            var perHead = new float[heads][];
            var perHeadBounds = new float[heads][];
            foreach (int h in new[] { 4, 0, 2, 1, 5, 3 })
            {
                s.Backend.ScoreAll(h, SelectionGranularity.QueryHead, got);
                fixed (float* q = s.Queries[layer])
                    AttentionKernels.ScoresAll(s.Cache, layer, h / 3, q + h * d, n, s.Scale, alone);
                Assert.Equal(alone, got);
                var naive = s.NaiveScores(layer, h, n);
                for (int p = 0; p < n; p++) Assert.True(Math.Abs(got[p] - naive[p]) <= 1e-4 * (1 + Math.Abs(naive[p])), $"layer {layer} head {h} position {p}");
                perHead[h] = got.ToArray();
                s.Backend.PageUpperBounds(h, SelectionGranularity.QueryHead, bound);
                perHeadBounds[h] = bound.ToArray();
                for (int p = 0; p < n; p++) Assert.True(got[p] <= bound[p / 16], $"layer {layer} head {h} position {p} above its page bound");
            }
            for (int kv = 0; kv < 2; kv++)
            {
                s.Backend.ScoreAll(kv, SelectionGranularity.KvHead, got);
                s.Backend.PageUpperBounds(kv, SelectionGranularity.KvHead, bound);
                for (int p = 0; p < n; p++)
                    Assert.Equal(Math.Max(perHead[3 * kv][p], Math.Max(perHead[3 * kv + 1][p], perHead[3 * kv + 2][p])), got[p]);
                for (int p = 0; p < pages; p++)
                    Assert.Equal(Math.Max(perHeadBounds[3 * kv][p], Math.Max(perHeadBounds[3 * kv + 1][p], perHeadBounds[3 * kv + 2][p])), bound[p]);
            }
        }
    }

    [Fact]
    public void ScoreRangeEqualsScoreAllSlice()
    {
        using var s = new SyntheticAttention(layers: 1, heads: 4, kvHeads: 1, headDim: 16, capacity: 200, seed: 4);
        s.FillTo(200);
        s.RandomQueries();
        s.Backend.Bind(0, s.Queries[0], 200);
        var all = new float[200];
        var range = new float[77];
        foreach (var g in new[] { SelectionGranularity.QueryHead, SelectionGranularity.KvHead })
        {
            s.Backend.ScoreAll(0, g, all);
            long before = s.Backend.KeysScored;
            ((ISelectionBackend)s.Backend).ScoreRange(0, g, 45, range);
            Assert.Equal(77, s.Backend.KeysScored - before);
            Assert.Equal(all.AsSpan(45, 77).ToArray(), range);
        }
    }

    [Fact]
    public void IndexSetOperationsEqualNaiveSetAlgebra()
    {
        using var s = new SyntheticAttention(layers: 1, heads: 1, kvHeads: 1, headDim: 8, capacity: 500, seed: 5);
        s.FillTo(500);
        s.Backend.Bind(0, s.Queries[0], 500);
        ISelectionBackend b = s.Backend;
        var rng = new Random(6);
        var result = new int[1000];
        for (int trial = 0; trial < 200; trial++)
        {
            var a = Enumerable.Range(0, 500).Where(_ => rng.Next(20) == 0).ToArray();
            var c = Enumerable.Range(0, 500).Where(_ => rng.Next(10) == 0).ToArray();
            int shift = rng.Next(-5, 6), radius = rng.Next(0, 4);
            var expected = a.SelectMany(p => Enumerable.Range(p + shift - radius, 2 * radius + 1)).Where(x => x >= 0 && x < 500).Distinct().Order();
            Assert.Equal(expected, result[..b.Expand(a, shift, radius, result)]);
            Assert.Equal(a.Union(c).Order(), result[..b.Union(a, c, result)]);
            int lo = rng.Next(-10, 500), hi = rng.Next(lo, 520);
            var range = Enumerable.Range(Math.Max(0, lo), Math.Max(0, Math.Min(hi, 500) - Math.Max(0, lo)));
            Assert.Equal(a.Union(range).Order(), result[..b.UnionRange(a, lo, hi, result)]);
        }
    }
}
