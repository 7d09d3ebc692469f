using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Model;
using Xunit;

namespace SparseDecode.Tests.Cuda;

/// <summary>The bookkeeping of the GPU's KV cache on demand, which needs no GPU: the pool's pages are taken all or
/// none and come back when their last mapping goes, and a slot's layout pads each head's run to whole pages.</summary>
public class KvPagePoolTests
{
    [Fact]
    public void PagesAreTakenAllOrNoneAndComeBackWithTheirLastHolder()
    {
        var ledger = new PageLedger(5);
        var three = new int[3];
        Assert.True(ledger.TryTake(three));
        Assert.Equal(3, three.Distinct().Count());
        Assert.Equal(2, ledger.Free);
        Assert.False(ledger.TryTake(new int[3]));
        Assert.Equal(2, ledger.Free);

        ledger.Share(three[0]);
        Assert.Equal(2, ledger.Holders(three[0]));
        Assert.False(ledger.Put(three[0]));
        Assert.Equal(2, ledger.Free);
        Assert.True(ledger.Put(three[0]));
        Assert.Equal(3, ledger.Free);

        var again = new int[3];
        Assert.True(ledger.TryTake(again));
        Assert.Contains(three[0], again);
        Assert.Equal(0, ledger.Free);
        foreach (int p in again) Assert.True(ledger.Put(p));
        foreach (int p in three.Where(p => !again.Contains(p))) Assert.True(ledger.Put(p));
        Assert.Equal(5, ledger.Free);
        // a free page can be neither given back again nor shared
        Assert.Throws<InvalidOperationException>(() => ledger.Put(three[0]));
        Assert.Throws<InvalidOperationException>(() => ledger.Share(three[0]));
    }

    [Fact]
    public void EachHeadsRunIsPaddedToWholePagesAndASequenceMapsWhatItsCapacityCovers()
    {
        var config = Config(layers: 32, kvHeads: 8, headDim: 128);
        const long Page = 2 << 20;
        var layout = new KvPageLayout(config, 32768, 16, Page);
        // 32768 keys of 256 bytes: 4 pages per head, no padding
        Assert.Equal(32768 * 128, layout.HeadStride);
        Assert.Equal(4, layout.KvPagesPerHead(32768));
        Assert.Equal(1, layout.KvPagesPerHead(1));
        Assert.Equal(1, layout.KvPagesPerHead(8192));
        Assert.Equal(2, layout.KvPagesPerHead(8193));
        // summaries of a layer: 8 heads × 2048 pages × 256 bytes = 4 MiB, two pages each of min and max
        Assert.Equal(2, layout.SummaryPages);
        Assert.Equal(32 * 2 * 8 * 2, layout.PagesFor(9000, summaries: false));
        Assert.Equal(32 * (2 * 8 * 2 + 2 * 2), layout.PagesFor(9000, summaries: true));

        // a context that is not a whole number of pages per head: the run is padded, the positions stay
        var odd = new KvPageLayout(config, 10000, 16, Page);
        Assert.Equal(16384 * 128, odd.HeadStride);
        Assert.Equal(2, odd.KvPagesPerHead(10000));

        // allocated whole: no padding, no pages
        var whole = new KvPageLayout(config, 10000, 16, 0);
        Assert.Equal(10000 * 128, whole.HeadStride);
        Assert.Equal(0, whole.PagesFor(10000, summaries: true));
        Assert.Equal(8L * 625 * 256, whole.SummarySlotBytes);
    }

    [Fact]
    public void TheCacheIsMappedOnDemandWhereThatSavesMemoryOrWhereWholeSlotsWouldNotFit()
    {
        var config = Config(layers: 32, kvHeads: 8, headDim: 128);
        const long Page = 2 << 20, Room = 60_000_000_000;
        // a context of two or more pages per head: on demand, whatever the room
        Assert.True(new KvPageLayout(config, 32768, 16, Page).OnDemandByDefault(wholeBytes: 1, Room));
        // one page per head saves nothing per sequence: whole where the slots fit, on demand where they do not
        var one = new KvPageLayout(config, 8192, 16, Page);
        Assert.False(one.OnDemandByDefault(GpuKvCache.BytesFor(config, 40, 8192), Room));
        Assert.True(one.OnDemandByDefault(GpuKvCache.BytesFor(config, 69, 8192), Room));
        // a driver that cannot map pages: always whole
        Assert.False(new KvPageLayout(config, 32768, 16, 0).OnDemandByDefault(long.MaxValue, Room));
    }

    private static ModelConfig Config(int layers, int kvHeads, int headDim) =>
        ModelConfig.Load(Fixtures.BundledModel) with { NumLayers = layers, NumHeads = 4 * kvHeads, NumKvHeads = kvHeads, HeadDim = headDim };
}
