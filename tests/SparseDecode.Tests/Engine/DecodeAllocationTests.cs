using SparseDecode.Engine;
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
    public void WarmDenseDecodeStepsAllocateNothing(string name, DType kvType)
    {
        using var model = Transformer.Load(Fixtures.Model(name));
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
}
