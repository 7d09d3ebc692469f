using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Model;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.EngineChecks;

[CollectionDefinition("allocation", DisableParallelization = true)]
public class AllocationCollection;

/// <summary>A warm decode step allocates no managed memory on any thread: its buffers live in the workspace and
/// its parallel regions are bound once (run alone, so that no other test's allocations are counted).</summary>
[Collection("allocation")]
public class DecodeAllocationTests
{
    [Theory]
    [InlineData("llama3-gqa", DType.F32)]
    [InlineData("llama3-gqa-bf16", DType.BF16)]
    [InlineData("qwen2-bias-tied", DType.F16)]
    [InlineData("", DType.Q8)]
    public void WarmDenseDecodeStepsAllocateNothing(string name, DType kvType)
    {
        // "": the bundled model, whose heads of 64 a q8 cache stores (the fixtures' are narrower than its blocks)
        using var model = Transformer.Load(name.Length == 0 ? Fixtures.BundledModel : Fixtures.Model(name));
        using var cache = model.CreateCache(128, kvType);
        var ws = new DecodeWorkspace(model, cache);
        var rng = new Random(3);
        model.Prefill(Enumerable.Range(0, 40).Select(_ => rng.Next(model.Config.VocabSize)).ToArray(), cache, ws.Logits);
        for (int i = 0; i < 8; i++) model.Decode(rng.Next(model.Config.VocabSize), cache, ws);
        // The calling thread is measured exactly. The process-wide count also sees the worker threads, but the
        // test runner's own threads may allocate meanwhile (reporting earlier tests), so it must be 0 in at least
        // one of several rounds: a step that allocates makes every round non-zero.
        long fewest = long.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            long thread0 = GC.GetAllocatedBytesForCurrentThread(), all0 = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < 16; i++) model.Decode(i % model.Config.VocabSize, cache, ws);
            long thread = GC.GetAllocatedBytesForCurrentThread() - thread0, all = GC.GetTotalAllocatedBytes(precise: true) - all0;
            Assert.Equal(0, thread);
            fewest = Math.Min(fewest, all);
        }
        Assert.Equal(0, fewest);
    }

    /// <summary>The same for the engine's batched step of several dense sequences of different lengths: its
    /// pointer tables and split inputs are sized once for the batch and reused. (Dense only, as above: what a
    /// method's plan allocates is the plan's own.)</summary>
    [Fact]
    public void WarmBatchedDecodeStepsAllocateNothing()
    {
        using var engine = CpuEngine.Load(Fixtures.Model("llama3-gqa-bf16"));
        IInferenceEngine e = engine;
        var rng = new Random(4);
        var sequences = new List<IDecodeSequence>();
        for (int n = 0; n < 5; n++)
        {
            var s = e.CreateSequence(256);
            s.Prefill(Enumerable.Range(0, 20 + 7 * sequences.Count).Select(_ => rng.Next(e.Config.VocabSize)).ToArray());
            sequences.Add(s);
        }
        var tokens = new int[sequences.Count];
        for (int i = 0; i < 8; i++) e.DecodeBatch(sequences, tokens);
        // As above, but the rounds go on (for a few seconds at most) until one allocates nothing: tiered
        // compilation recompiles the step's many methods in the background for a while after the warm-up, and
        // what it allocates meanwhile is counted too (with it switched off every round is 0).
        var watch = System.Diagnostics.Stopwatch.StartNew();
        long fewest = long.MaxValue;
        for (int round = 0; fewest > 0 && (round < 5 || watch.ElapsedMilliseconds < 5000); round++)
        {
            long thread0 = GC.GetAllocatedBytesForCurrentThread(), all0 = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < 16; i++) e.DecodeBatch(sequences, tokens);
            long thread = GC.GetAllocatedBytesForCurrentThread() - thread0, all = GC.GetTotalAllocatedBytes(precise: true) - all0;
            Assert.Equal(0, thread);
            fewest = Math.Min(fewest, all);
        }
        Assert.Equal(0, fewest);
        foreach (var s in sequences) s.Dispose();
    }

    /// <summary>Warm speculative passes — sparse drafts with plan checkpoints (LFPS), the dense multi-token pass,
    /// rollbacks and truncations — allocate nothing on the calling thread.</summary>
    [Theory]
    [InlineData("lfps")]
    [InlineData("tidal")]
    public void WarmSpeculativePassesAllocateNothing(string method)
    {
        using var engine = CpuEngine.Load(Fixtures.Model("llama3-gqa-bf16"));
        IInferenceEngine e = engine;
        var rng = new Random(5);
        var plan = e.PlanFor(SparseDecode.Selection.SelectorSpec.Parse(method, "6", new Dictionary<string, string>()))!;
        using var s = e.CreateSequence(200, plan);
        s.Prefill(Enumerable.Range(0, 60).Select(_ => rng.Next(e.Config.VocabSize)).ToArray());
        var decoder = new SpeculativeDecoder(e.Config.VocabSize, new SpeculationOptions(4));
        var sampler = new Sampler(SamplingOptions.Greedy);
        var tokens = new List<int>(256);
        int[] stop = [];
        decoder.Run(s, plan, sampler, 30, stop, tokens);
        long thread0 = GC.GetAllocatedBytesForCurrentThread();
        decoder.Run(s, plan, sampler, 20, stop, tokens);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - thread0);
        // LFPS's drafts are rejected here, so its rollback is measured; TidalDecode's on this fixture are kept
        if (method == "lfps") Assert.True(decoder.Stats.Drafted > decoder.Stats.Accepted, "the runs must reject drafts, so that the rollback is measured");
    }
}
