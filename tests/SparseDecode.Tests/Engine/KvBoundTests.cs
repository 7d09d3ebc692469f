using SparseDecode.Cpu;
using SparseDecode.Diagnostics;
using SparseDecode.Engine;
using SparseDecode.Model;

namespace SparseDecode.Tests.EngineChecks;

/// <summary>The CPU engine's bound on its KV caches (<see cref="EngineOptions.KvCacheBytes"/>): every sequence counts
/// what its capacity can allocate from its making to its disposal, and one that would pass the bound is refused
/// before anything is allocated.</summary>
public sealed class KvBoundTests
{
    // the bundled model: a sequence of 300 positions takes three of its f32 cache's segments (128 positions each)
    private static string Dir => Fixtures.BundledModel;

    [Fact]
    public void ASequenceBeyondTheBoundIsRefusedAndEveryByteComesBack()
    {
        var config = ModelConfig.Load(Dir);
        long one = KvCache.BytesFor(config, DType.F32, 300);
        Assert.Equal(3 * KvCache.BytesFor(config, DType.F32, 8), one);
        using var engine = CpuEngine.Load(Dir, DType.F32, kvCacheBytes: 2 * one + one / 2);
        IInferenceEngine e = engine;
        Assert.Equal((2 * one + one / 2, 2 * one + one / 2), e.KvPool);
        var a = e.CreateSequence(300);
        var b = e.CreateSequence(300);
        Assert.Equal(one / 2, e.KvPool.Free);
        Assert.False(e.HasRoomFor(300));
        Assert.True(e.HasRoomFor(8));
        var full = Assert.Throws<KvCacheFullException>(() => e.CreateSequence(300));
        Assert.Contains("of KV cache", full.Message);
        a.Prefill([1, 2, 3, 4, 5]);
        Assert.Throws<KvCacheFullException>(() => a.Fork(300));
        Assert.Equal(one / 2, e.KvPool.Free); // a refused fork holds nothing
        b.Dispose();
        b.Dispose(); // a second disposal gives nothing back twice
        Assert.Equal(one + one / 2, e.KvPool.Free);
        using (var copy = a.ForkPrefix(3, 300))
            Assert.Equal(one / 2, e.KvPool.Free);
        // a copy counts its own capacity, not its source's
        using (var small = a.ForkPrefix(3, 8))
            Assert.Equal(one + one / 2 - KvCache.BytesFor(config, DType.F32, 8), e.KvPool.Free);
        a.Dispose();
        Assert.Equal(e.KvPool.Total, e.KvPool.Free);
        Assert.Equal(0, EngineContractCheck.PoolReturns(e).Worst);
    }

    /// <summary>What a sequence counts is what its cache allocates once it is full: the bound is neither loose nor
    /// overrun, for f32 and q8 caches.</summary>
    [Theory]
    [InlineData(DType.F32, 100)]
    [InlineData(DType.Q8, 300)]
    public void ASequenceCountsWhatItsFullCacheAllocates(DType type, int capacity)
    {
        using var engine = CpuEngine.Load(Fixtures.BundledModel, type, kvCacheBytes: 1L << 30);
        IInferenceEngine e = engine;
        using var s = e.CreateSequence(capacity);
        long counted = e.KvPool.Total - e.KvPool.Free;
        s.Prefill(Enumerable.Range(1, capacity).ToArray());
        Assert.Equal(counted, s.CacheBytes);
    }

    /// <summary>A bound must hold at least the smallest sequence (one segment); below it the engine is refused at once,
    /// in one sentence that gives the size.</summary>
    [Fact]
    public void ABoundMustHoldOneSequence()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuEngine.Load(Dir, DType.F32, kvCacheBytes: 0));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CpuEngine.Load(Dir, DType.F32, kvCacheBytes: 1000));
        Assert.Contains("holds no sequence: the smallest, one segment of this model's cache, takes 1.1 MB", e.Message);
        using var smallest = CpuEngine.Load(Dir, DType.F32, kvCacheBytes: KvCache.BytesFor(ModelConfig.Load(Dir), DType.F32, 1));
        using var one = ((IInferenceEngine)smallest).CreateSequence(128);
        Assert.False(((IInferenceEngine)smallest).HasRoomFor(1));
    }
}
