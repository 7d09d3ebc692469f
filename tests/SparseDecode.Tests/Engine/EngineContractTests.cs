using SparseDecode.Diagnostics;
using SparseDecode.Engine;
using SparseDecode.Tests.Cuda;
using Xunit.Abstractions;
using SparseDecode.Cpu;

namespace SparseDecode.Tests;

/// <summary>The engine contract (<see cref="EngineContractCheck"/>) on the CPU, and on the GPU where there is one.</summary>
public sealed class EngineContractTests(ITestOutputHelper output)
{
    private static readonly string Dir = Fixtures.Model("llama3-gqa-bf16");

    [Fact]
    public void CpuEngineKeepsTheContract()
    {
        using var engine = CpuEngine.Load(Dir, Model.DType.BF16);
        AssertAll(EngineContractCheck.Run(engine, batchTolerance: 0, sparseBatchTolerance: 0));
    }

    /// <summary>The contract with a q8 cache, on the bundled model (the fixtures' heads are narrower than a q8 block).</summary>
    [Fact]
    public void CpuEngineWithAQ8CacheKeepsTheContract()
    {
        using var engine = CpuEngine.Load(Fixtures.BundledModel, Model.DType.Q8);
        AssertAll(EngineContractCheck.Run(engine, batchTolerance: 0, sparseBatchTolerance: 0));
    }

    [Fact]
    public void ACopyOfAPrefixContinuesLikeThatPrefixPrefilledAlone()
    {
        using var engine = CpuEngine.Load(Dir, Model.DType.BF16);
        var check = EngineContractCheck.SharedPrefix(engine, 96, 64, tolerance: 0);
        Assert.True(check.Passed, $"{check.Name}: logits differ by {check.Worst:G3}");
    }

    [CudaFact]
    public void GpuEngineKeepsTheContract()
    {
        using var engine = SparseDecode.Backends.BackendRegistry.Load(Dir, new SparseDecode.Engine.EngineOptions { Device = "cuda", Capacity = 128, Sequences = EngineContractCheck.Slots });
        AssertAll(EngineContractCheck.Run(engine, EngineContractCheck.GpuBatchTolerance, EngineContractCheck.GpuSparseBatchTolerance));
    }

    private void AssertAll(IReadOnlyList<EngineContractCheck.Check> checks)
    {
        foreach (var c in checks) output.WriteLine($"{c.Name}: {c.Worst:G3} (≤ {c.Tolerance:G3})");
        Assert.Equal(10, checks.Count); // both engines run speculative decoding through its decode-step pass
        Assert.All(checks, c => Assert.True(c.Passed, $"{c.Name}: logits differ by {c.Worst:G3}, allowed {c.Tolerance:G3}"));
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
        var e = Assert.Throws<ArgumentException>(() => SparseDecode.Backends.BackendRegistry.Load(Dir, new SparseDecode.Engine.EngineOptions { Device = "tpu" }));
        Assert.Contains("tpu", e.Message);
    }
}
