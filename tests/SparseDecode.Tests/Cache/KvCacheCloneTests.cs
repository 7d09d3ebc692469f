using SparseDecode.Cpu;
using SparseDecode.Model;

namespace SparseDecode.Tests.CacheChecks;

/// <summary>A copy of a cache whose capacity is not a whole number of pages (bench --context 3000 --steps 4 made
/// one) keeps its keys and room, instead of failing to allocate its last page.</summary>
public class KvCacheCloneTests
{
    [Fact]
    public unsafe void CloneOfACacheWithAPartialLastPageKeepsItsKeysAndRoom()
    {
        using var cache = new KvCache(layers: 1, kvHeads: 1, headDim: 4, DType.F32, capacity: 21, pageSize: 16);
        cache.EnsureCapacity(20);
        cache.Length = 20;
        *(float*)cache.Key(0, 0, 19) = 7f;
        using var copy = cache.Clone();
        Assert.Equal(20, copy.Length);
        Assert.Equal(7f, *(float*)copy.Key(0, 0, 19));
        copy.EnsureCapacity(21); // the one position left
        Assert.Throws<InvalidOperationException>(() => copy.EnsureCapacity(22));
    }
}
