using SparseDecode.Engine;
using SparseDecode.Kernels;
using SparseDecode.Selection;
using SparseDecode.Tests.Cuda;

namespace SparseDecode.Tests;

/// <summary>What every engine promises its callers (Generator, Scorer, the eval grid, the server): a batched step
/// equals each sequence's own step, a fork continues exactly like the original, a truncated sequence continues like
/// one prefilled only that far. The CPU always; the GPU where there is one.</summary>
public sealed class EngineContractTests
{
    private static readonly string Dir = Fixtures.Model("llama3-gqa-bf16");

    private static int[] Tokens(int n, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
    }

    [Fact]
    public void CpuBatchedStepEqualsEachSequenceAlone() => BatchedStepEqualsEachSequenceAlone(CpuEngine.Load(Dir, Model.DType.BF16), 0);

    [Fact]
    public void CpuForkContinuesLikeTheOriginal() => ForkContinuesLikeTheOriginal(CpuEngine.Load(Dir, Model.DType.BF16), 0);

    [Fact]
    public void CpuTruncatedSequenceContinuesLikeAShorterPrefill() => TruncatedContinuesLikeShorterPrefill(CpuEngine.Load(Dir, Model.DType.BF16), 0);

    [CudaFact]
    public void GpuBatchedStepEqualsEachSequenceAlone() => BatchedStepEqualsEachSequenceAlone(GpuEngine(6), 2e-3);

    [CudaFact]
    public void GpuForkContinuesLikeTheOriginal() => ForkContinuesLikeTheOriginal(GpuEngine(3), 0);

    [CudaFact]
    public void GpuTruncatedSequenceContinuesLikeAShorterPrefill() => TruncatedContinuesLikeShorterPrefill(GpuEngine(2), 0);

    private static IInferenceEngine GpuEngine(int slots) => new EngineOptions { Device = "cuda", Capacity = 128, Sequences = slots }.Load(Dir);

    /// <summary>Three sequences of different lengths, one dense and two sparse, decoded in one batch against the
    /// same three decoded one by one. `tolerance`: rows of one GPU step go through the tensor-core products,
    /// a lone row through the one-row kernel (the same sums in another order).</summary>
    private static void BatchedStepEqualsEachSequenceAlone(IInferenceEngine engine, double tolerance)
    {
        using (engine)
        {
            var c = engine.Config;
            int[] lengths = [20, 33, 47];
            Func<IKvSelector?>[] methods = [() => null, () => SelectorSpec.Parse("oracle", "8", new Dictionary<string, string>()).Create(c), () => SelectorSpec.Parse("quest", "16", new Dictionary<string, string>()).Create(c)];
            var together = new List<IDecodeSequence>();
            var alone = new List<IDecodeSequence>();
            for (int i = 0; i < 3; i++)
            {
                var prompt = Tokens(lengths[i], c.VocabSize, i);
                var a = engine.CreateSequence(64, methods[i]());
                a.Prefill(prompt);
                together.Add(a);
                var b = engine.CreateSequence(64, methods[i]());
                b.Prefill(prompt);
                alone.Add(b);
            }
            try
            {
                var next = Tokens(5 * 3, c.VocabSize, 99);
                for (int step = 0; step < 5; step++)
                {
                    engine.DecodeBatch(together, next.AsSpan(step * 3, 3));
                    for (int i = 0; i < 3; i++)
                    {
                        alone[i].Decode(next[step * 3 + i]);
                        Assert.Equal(lengths[i] + step + 1, together[i].Length);
                        AssertClose(alone[i].Logits, together[i].Logits, tolerance);
                    }
                }
            }
            finally
            {
                foreach (var s in together.Concat(alone)) s.Dispose();
            }
        }
    }

    private static void ForkContinuesLikeTheOriginal(IInferenceEngine engine, double tolerance)
    {
        using (engine)
        {
            var c = engine.Config;
            using var original = engine.CreateSequence(96);
            original.Prefill(Tokens(40, c.VocabSize, 5));
            using var copy = original.Fork(80);
            Assert.Equal(40, copy.Length);
            Assert.Equal(80, copy.Capacity);
            AssertClose(original.Logits, copy.Logits, 0);
            foreach (int t in Tokens(12, c.VocabSize, 6))
            {
                original.Decode(t);
                copy.Decode(t);
                AssertClose(original.Logits, copy.Logits, tolerance);
            }
            Assert.Throws<ArgumentOutOfRangeException>(() => original.Fork(10));
        }
    }

    private static void TruncatedContinuesLikeShorterPrefill(IInferenceEngine engine, double tolerance)
    {
        using (engine)
        {
            var c = engine.Config;
            var prompt = Tokens(50, c.VocabSize, 7);
            using var cut = engine.CreateSequence(64);
            cut.Prefill(prompt);
            cut.Truncate(30);
            Assert.Equal(30, cut.Length);
            using var shorter = engine.CreateSequence(64);
            shorter.Prefill(prompt.AsSpan(0, 30));
            foreach (int t in Tokens(6, c.VocabSize, 8))
            {
                cut.Decode(t);
                shorter.Decode(t);
                AssertClose(shorter.Logits, cut.Logits, tolerance);
            }
        }
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
        Assert.True(worst <= tolerance, $"logits differ by up to {worst:G3} (allowed {tolerance:G3})");
    }

    [Fact]
    public void CpuSequencesRefuseTokensBeyondTheirCapacity()
    {
        using var engine = CpuEngine.Load(Dir);
        using var s = engine.CreateSequence(4);
        s.Prefill([1, 2, 3, 4]);
        Assert.Throws<ContextOverflowException>(() => s.Decode(5));
        Assert.Throws<ContextOverflowException>(() => engine.CreateSequence(engine.MaxContext + 1));
    }

    [Fact]
    public void UnknownDeviceIsRefusedInOneSentence()
    {
        var e = Assert.Throws<ArgumentException>(() => new EngineOptions { Device = "tpu" }.Load(Dir));
        Assert.Contains("tpu", e.Message);
    }
}
