using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Server.Scheduling;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>The prompt cache's own rules, on sequences that only count: the longest shared prefix wins, a covered
/// prompt is not kept twice, and entries go least recently used first past the count or the bytes allowed.</summary>
public class PrefixCacheUnitTests
{
    [Fact]
    public void TheLongestSharedPrefixWinsAndCoveredPromptsAreNotKeptTwice()
    {
        using var cache = new PrefixCache(capacity: 3, minTokens: 2);
        var a = new Counted(10, 100);
        Assert.True(cache.Keep([1, 2, 3, 4], a));
        Assert.Equal(4, a.Length);
        Assert.True(cache.Keep([1, 2, 9, 9, 9], new Counted(5, 100)));
        var (source, shared) = cache.Find([1, 2, 3, 4, 5]).GetValueOrDefault();
        Assert.Same(a, source);
        Assert.Equal(4, shared);
        Assert.Null(cache.Find([1, 7]));          // one token shared: under minTokens
        Assert.False(cache.Keep([1, 2, 3], new Counted(3, 100)));   // covered by [1, 2, 3, 4]
        var longer = new Counted(6, 100);
        Assert.True(cache.Keep([1, 2, 3, 4, 5, 6], longer));       // covers [1, 2, 3, 4], which goes
        Assert.True(a.Disposed);
        Assert.Equal(2, cache.Count);
    }

    [Fact]
    public void EntriesGoLeastRecentlyUsedFirstPastTheCountOrTheBytes()
    {
        using var cache = new PrefixCache(capacity: 2, minTokens: 1, maxBytes: 250);
        var first = new Counted(2, 100);
        var second = new Counted(2, 100);
        cache.Keep([1, 1], first);
        cache.Keep([2, 2], second);
        Assert.NotNull(cache.Find([1, 1, 5]));      // first is now the most recently used
        var third = new Counted(2, 100);
        cache.Keep([3, 3], third);
        Assert.True(second.Disposed);
        Assert.False(first.Disposed);
        var big = new Counted(2, 200);
        cache.Keep([4, 4], big);                    // 300 bytes with first and third: both older ones go
        Assert.True(first.Disposed && third.Disposed);
        Assert.Equal(200, cache.Bytes);
        Assert.False(cache.Keep([5, 5], new Counted(2, 300)));     // alone above the bytes allowed
        Assert.True(cache.EvictOne());
        Assert.True(big.Disposed);
        Assert.Equal(0, cache.Bytes);
        Assert.False(cache.EvictOne());
    }

    /// <summary>A sequence that only counts its length and bytes.</summary>
    private sealed class Counted(int length, long bytes) : IDecodeSequence
    {
        public bool Disposed;
        public int Length { get; private set; } = length;
        public int Capacity => Length;
        public long CacheBytes => bytes;
        public ReadOnlySpan<float> Logits => [];
        public void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null) => Length += tokens.Length;
        public void Decode(int token, IAttentionObserver? observer = null) => Length++;
        public IDecodeSequence Fork(int capacity, SelectionPlan? plan = null) => new Counted(Length, bytes);
        public void Truncate(int length) => Length = length;
        public void Dispose() => Disposed = true;
    }
}
