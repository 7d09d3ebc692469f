using SparseDecode.Cpu;
using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Tests.EngineChecks;

/// <summary>The CPU engine's batched decode step (<see cref="Transformer.Decode(DecodeBatch, IAttentionObserver?)"/>):
/// every row equals its sequence decoded alone, bit for bit.</summary>
public sealed class BatchedDecodeTests
{
    private static readonly Dictionary<string, string> None = [];

    /// <summary>Seven sequences of different lengths, dense and five methods (per KV head and per query head
    /// lists), through f32, bf16 and f16 weights, biases and the bundled model (with an f32 and a q8 cache): three steps of all of them, then
    /// a step of three in another order (sequences join and leave a serving batch). The batch grows from one row
    /// on the way, and an odd count sends one row through the one-input kernel.</summary>
    [Theory]
    [InlineData("llama3-gqa", DType.F32)]
    [InlineData("llama3-gqa-bf16", DType.BF16)]
    [InlineData("mistral-f16", DType.F16)]
    [InlineData("qwen2-bias-tied", DType.F32)]
    [InlineData("", DType.F32)]
    [InlineData("", DType.Q8)]
    public void EachRowOfABatchedStepEqualsItsSequenceAloneBitForBit(string fixture, DType cacheType)
    {
        using var engine = CpuEngine.Load(fixture.Length == 0 ? Fixtures.BundledModel : Fixtures.Model(fixture), cacheType);
        IInferenceEngine e = engine;
        string?[] methods = [null, "quest", "oracle", "tidal", "streaming", null, "lfps"];
        int[] lengths = [20, 33, 47, 5, 60, 12, 38];
        var rng = new Random(11);
        var together = new List<IDecodeSequence>();
        var alone = new List<IDecodeSequence>();
        try
        {
            for (int i = 0; i < methods.Length; i++)
            {
                var plan = methods[i] is string m ? e.PlanFor(SelectorSpec.Parse(m, "16", None)) : null;
                var prompt = Enumerable.Range(0, lengths[i]).Select(_ => rng.Next(e.Config.VocabSize)).ToArray();
                together.Add(e.CreateSequence(96, plan));
                alone.Add(e.CreateSequence(96, plan));
                together[i].Prefill(prompt);
                alone[i].Prefill(prompt);
            }
            int[][] steps = [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5, 6], [6, 0, 4]];
            foreach (var rows in steps)
            {
                var tokens = rows.Select(_ => rng.Next(e.Config.VocabSize)).ToArray();
                e.DecodeBatch(rows.Select(i => together[i]).ToList(), tokens);
                for (int j = 0; j < rows.Length; j++)
                {
                    int i = rows[j];
                    alone[i].Decode(tokens[j]);
                    Assert.Equal(alone[i].Length, together[i].Length);
                    var a = alone[i].Logits;
                    var t = together[i].Logits;
                    for (int v = 0; v < a.Length; v++)
                        Assert.True(BitConverter.SingleToInt32Bits(a[v]) == BitConverter.SingleToInt32Bits(t[v]),
                            $"sequence {i} ({methods[i] ?? "dense"}) at position {together[i].Length}, logit {v}: {t[v]:R} batched vs {a[v]:R} alone");
                }
            }
        }
        finally
        {
            foreach (var s in together.Concat(alone)) s.Dispose();
        }
    }

    [Fact]
    public void ABatchRefusesAnObserverAndARepeatedSequence()
    {
        using var model = Transformer.Load(Fixtures.Model("llama3-gqa"));
        using var c0 = model.CreateCache(16);
        using var c1 = model.CreateCache(16);
        var batch = new DecodeBatch();
        batch.Add(1, c0, new DecodeWorkspace(model, c0), null);
        batch.Add(2, c1, new DecodeWorkspace(model, c1), null);
        var e = Assert.Throws<ArgumentException>(() => model.Decode(batch, new SparsityObserver()));
        Assert.Contains("alone", e.Message);
        Assert.Equal(0, c0.Length);

        using var engine = new CpuEngine(model);
        using var s = engine.CreateSequence(16);
        s.Prefill([1, 2]);
        Assert.Throws<ArgumentException>(() => engine.DecodeBatch([s, s], [3, 4]));
    }
}
