using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>Host side of Cuda/Kernels/selection.cu: the selection plans' operations as kernels batched over every
/// selection head of every row (scores of all keys or of lists, Quest page bounds, top-k sizes, StreamingLLM's
/// window, LFPS's candidates and bookkeeping, PrHS's sharing decision, dilation and composed sets). Every method only queues work (graph-capturable).</summary>
internal sealed class SelectionKernels : IDisposable
{
    public const string SourceFile = "selection.cu";
    public const int Threads = 256;
    /// <summary>Threads of the LFPS candidate kernel (one block per row and head).</summary>
    public const int CandidateThreads = 1024;
    /// <summary>Query heads one selection head may stand for (the scores kernel keeps them in shared memory).</summary>
    public const int MaxQueriesPerHead = 16;

    public static readonly string[] KernelNames =
        ["plan_begin_step", "plan_state_copy", "sel_scores", "sel_page_bounds", "sel_topk_sizes", "sel_window", "lfps_candidates", "lfps_remember",
         "prhs_share", "prhs_dilate", "prhs_compose"];

    private readonly CudaModule _module;
    public CudaDevice Device { get; }
    public bool FromCache => _module.FromCache;

    public SelectionKernels(CudaDevice device)
    {
        Device = device;
        _module = CudaModule.Load(device, SourceFile);
        foreach (var n in KernelNames) _ = _module[n];
    }

    public IEnumerable<(string Name, int Registers, int LocalBytes, int SharedBytes)> Resources() =>
        KernelNames.Select(n => (n, _module[n].Registers, _module[n].LocalBytes, _module[n].StaticSharedBytes));

    /// <summary>Which query heads a selection head stands for and how a launch is laid out over heads and rows.</summary>
    public readonly record struct Heads(int Count, int QueriesPer, int Group, int QueryHeads, int HeadDim, int Rows);

    private int Chunk(long items, in Heads h, int granularity) =>
        LaunchPlan.Chunk(items, h.Count, h.Rows, Device.Multiprocessors, 8, granularity, minChunk: granularity, maxChunk: 8192);

    public void BeginStep(DeviceBuffer steps, int rows, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(steps); a.Add(rows);
        _module["plan_begin_step"].Launch(((rows + 127) / 128, 1, 1), 128, s, ref a);
    }

    /// <summary>Moves a plan's carried state between the `rows` rows of a step and the sequences' places in `pool`
    /// (selection.cu's plan_state_copy): `table` holds the buffers' row bases (u64[buffers]), then their words per row
    /// and their offsets in a sequence's place (i64[buffers] each); `slots` (device int[rows]) names each row's place.</summary>
    public void StateCopy(DeviceBuffer table, int buffers, long longestRowWords, ulong slots, int rows, DeviceBuffer pool, long slotWords,
        bool toPool, CudaStream s)
    {
        if (buffers == 0 || rows == 0) return;
        var a = new KernelArgs();
        a.Add(table); a.Add(table.At(buffers * 8L)); a.Add(table.At(buffers * 16L)); a.Add(slots); a.Add(pool); a.Add(slotWords);
        a.Add(toPool ? 1 : 0);
        int splits = (int)Math.Clamp((longestRowWords + 4 * Threads - 1) / (4 * Threads), 1, 256);
        _module["plan_state_copy"].Launch((splits, buffers, rows), Threads, s, ref a);
    }

    /// <summary>Scores of every key (list and range null; launches cover kv.PlanLength keys), of each head's list
    /// (entries [rows·heads][listStride], counts in listMeta) or of each head's range (rangeStart[row] + j for
    /// j &lt; rangeLength[row]), into out [rows·heads][outStride]; masked heads skipped. Every key for
    /// per-query-head rows goes one block per KV head, each key row read once for its whole group.</summary>
    public void Scores(in KvView kv, DeviceBuffer q, in Heads h, float scale, DeviceBuffer? list, DeviceBuffer? listMeta,
        int listStride, DeviceBuffer? mask, int maskKind, DeviceBuffer output, int outStride, CudaStream s,
        DeviceBuffer? rangeStart = null, DeviceBuffer? rangeLength = null)
    {
        int items = list is null ? kv.PlanLength : listStride;
        bool spread = list is null && rangeStart is null && h.QueriesPer == 1 && h.Group > 1;
        var launch = spread ? h with { Count = h.Count / h.Group, QueriesPer = h.Group } : h;
        int chunk = Chunk(items, launch, 32); // 8 warps × 4 keys per turn
        var a = new KernelArgs();
        a.Add(kv.KBases); a.Add(kv.Lengths); a.Add(kv.HeadStride); a.Add(h.HeadDim); a.Add(q); a.Add(h.QueryHeads);
        a.Add(launch.Count); a.Add(launch.QueriesPer); a.Add(h.Group); a.Add(spread ? 1 : 0); a.Add(scale); a.Add(list); a.Add(listMeta);
        a.Add(listStride); a.Add(rangeStart); a.Add(rangeLength); a.Add(mask); a.Add(maskKind); a.Add(chunk); a.Add(output); a.Add(outStride);
        _module["sel_scores"].Launch((LaunchPlan.Chunks(items, chunk), launch.Count, h.Rows), Threads, s, ref a);
    }

    /// <summary>Quest's page bounds of every selection head (out [rows·heads][outStride], one entry per page). Per-query-head
    /// rows go one block per KV head, as the scores of every key do: each page summary read once for its group. With
    /// `positions` (the rows' newest positions, device int[kv.Rows]) the kernel first brings the summary of each row's
    /// newest page up to date, as ModelKernels.PageUpdate would, where every KV head of every row is one block row of
    /// the launch; returns whether it did.</summary>
    public bool PageBounds(in KvView kv, DeviceBuffer q, in Heads h, float scale, DeviceBuffer output, int outStride, CudaStream s,
        ulong positions = 0)
    {
        bool spread = h.QueriesPer == 1 && h.Group > 1 && h.Group <= MaxQueriesPerHead;
        var launch = spread ? h with { Count = h.Count / h.Group, QueriesPer = h.Group } : h;
        if (launch.Count != kv.KvHeads || kv.Rows > h.Rows) positions = 0;
        int pages = (kv.PlanLength + kv.PageSize - 1) / kv.PageSize;
        // One wave of blocks, not the four small waves of the bandwidth-bound kernels: a block's time is a chain of
        // load latencies (its row's length, the queries, then each turn's summaries), so fewer, longer-lived blocks
        // wait less in total.
        int turn = PageBoundsPagesPerTurn(h.HeadDim);
        int chunk = LaunchPlan.Chunk(pages, launch.Count, h.Rows, Device.Multiprocessors, PageBoundsBlocksPerMultiprocessor,
            turn, minChunk: turn, maxChunk: 8192, waves: 1);
        var a = new KernelArgs();
        a.Add(kv.MinBases); a.Add(kv.MaxBases); a.Add(kv.Lengths); a.Add(kv.PageHeadStride); a.Add(kv.PageSize); a.Add(h.HeadDim);
        a.Add(q); a.Add(h.QueryHeads); a.Add(launch.Count); a.Add(launch.QueriesPer); a.Add(h.Group); a.Add(spread ? 1 : 0); a.Add(scale);
        a.Add(chunk); a.Add(output); a.Add(outStride); a.Add(positions != 0 ? kv.KBases : 0UL); a.Add(positions); a.Add(kv.HeadStride);
        a.Add(kv.Rows);
        _module["sel_page_bounds"].Launch((LaunchPlan.Chunks(pages, chunk), launch.Count, h.Rows), Threads, s, ref a);
        return positions != 0;
    }

    /// <summary>Pages a block of sel_page_bounds consumes per loop turn: 8 warps × PB_TURN × the pages a warp holds
    /// (32 lanes ÷ the smallest power of two covering headDim / 8, as pb_seg computes it).</summary>
    public static int PageBoundsPagesPerTurn(int headDim)
    {
        int lanes = (headDim + 7) / 8, seg = 1;
        while (seg < lanes) seg <<= 1;
        return Threads / 32 * 2 * (32 / seg);
    }
    /// <summary>Resident blocks of sel_page_bounds per multiprocessor (its __launch_bounds__ minimum).</summary>
    private const int PageBoundsBlocksPerMultiprocessor = 3;

    public enum SizeMode { AllPositions = 0, Candidates = 1 }

    /// <summary>Row lengths and k per (row, head) for a top-k (see sel_topk_sizes).</summary>
    public void TopKSizes(ulong lengths, int heads, int rows, SizeMode mode, SparseDecode.Selection.Budget budget, DeviceBuffer? candidateMeta,
        DeviceBuffer? mask, int maskKind, DeviceBuffer rowLens, DeviceBuffer ks, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(lengths); a.Add(heads); a.Add(rows); a.Add((int)mode); a.Add(budget.Tokens); a.Add(budget.Fraction);
        a.Add(candidateMeta); a.Add(mask); a.Add(maskKind); a.Add(rowLens); a.Add(ks);
        _module["sel_topk_sizes"].Launch(((rows * heads + 127) / 128, 1, 1), 128, s, ref a);
    }

    public void Window(ulong lengths, int heads, int rows, int sinks, SparseDecode.Selection.Budget budget, DeviceBuffer output, DeviceBuffer meta, int capacity, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(lengths); a.Add(heads); a.Add(sinks); a.Add(budget.Tokens); a.Add(budget.Fraction); a.Add(output); a.Add(meta); a.Add(capacity);
        _module["sel_window"].Launch((rows * heads, 1, 1), 128, s, ref a);
    }

    public readonly record struct Lists(DeviceBuffer Entries, DeviceBuffer Meta, int Capacity, int Depth);

    public void LfpsCandidates(ulong lengths, DeviceBuffer steps, int heads, int rows, in Lists history, DeviceBuffer lastRefresh,
        DeviceBuffer refresh, in SparseDecode.Selection.LfpsRule rule, DeviceBuffer bitmap, int words, in Lists output, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(lengths); a.Add(steps); a.Add(heads); a.Add(history.Entries); a.Add(history.Meta); a.Add(history.Depth);
        a.Add(history.Capacity); a.Add(lastRefresh); a.Add(refresh); a.Add(rule.Sinks); a.Add(rule.Recent); a.Add(rule.Radius);
        a.Add(rule.Interval); a.Add(bitmap); a.Add(words); a.Add(output.Entries); a.Add(output.Meta); a.Add(output.Capacity);
        int shared = SharedBitmapBytes(words);
        a.Add(shared > 0 ? 1 : 0);
        _module["lfps_candidates"].Launch((rows * heads, 1, 1), CandidateThreads, s, ref a, shared);
    }

    public void LfpsRemember(ulong lengths, DeviceBuffer steps, int heads, int rows, in Lists selected, DeviceBuffer all, int allStride,
        DeviceBuffer refresh, DeviceBuffer referenceMax, int refStride, DeviceBuffer lastRefresh, DeviceBuffer refreshes,
        DeviceBuffer triggered, in Lists history, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(lengths); a.Add(steps); a.Add(heads); a.Add(selected.Entries); a.Add(selected.Meta); a.Add(selected.Capacity);
        a.Add(all); a.Add(allStride); a.Add(refresh); a.Add(referenceMax); a.Add(refStride); a.Add(lastRefresh); a.Add(refreshes);
        a.Add(triggered); a.Add(history.Entries); a.Add(history.Meta); a.Add(history.Depth); a.Add(history.Capacity);
        _module["lfps_remember"].Launch((rows * heads, 1, 1), Threads, s, ref a);
    }

    /// <summary>PrHS's budget split and per-layer rule as the kernels take them.</summary>
    public readonly record struct PrhsSizes(int Tokens, double Fraction, SparseDecode.Selection.PrhsRule Rule);

    /// <summary>PrHS's sharing decision and retrieval domain per (row, head) (prhs_share); prev/prevAt: the previous
    /// layer's sets and stamps (null: nothing to freeze from). Also the first top-k's sizes into rowLens and ks.</summary>
    public void PrhsShare(ulong lengths, DeviceBuffer steps, in Heads h, in PrhsSizes z, DeviceBuffer q, DeviceBuffer reference,
        int refStride, DeviceBuffer retrievedAt, DeviceBuffer? prevAt, in Lists? prev, DeviceBuffer decision, DeviceBuffer domStart,
        DeviceBuffer domLen, DeviceBuffer frozenFrom, DeviceBuffer frozenCount, DeviceBuffer rowLens, DeviceBuffer ks, CudaStream s)
    {
        var r = z.Rule;
        var a = new KernelArgs();
        a.Add(lengths); a.Add(steps); a.Add(h.Count); a.Add(z.Tokens); a.Add(z.Fraction); a.Add(r.Sinks); a.Add(r.Local); a.Add(r.Tau);
        a.Add(r.Block); a.Add(r.Radius); a.Add(r.Top); a.Add(r.Prune); a.Add(r.Freeze); a.Add(q); a.Add(h.QueryHeads); a.Add(h.QueriesPer);
        a.Add(h.HeadDim); a.Add(reference); a.Add(refStride); a.Add(retrievedAt); a.Add(prevAt); a.Add(prev?.Entries); a.Add(prev?.Meta);
        a.Add(prev?.Capacity ?? 0); a.Add(decision); a.Add(domStart); a.Add(domLen); a.Add(frozenFrom); a.Add(frozenCount);
        a.Add(rowLens); a.Add(ks);
        _module["prhs_share"].Launch((h.Rows * h.Count, 1, 1), Threads, s, ref a);
    }

    /// <summary>PrHS's dilation of the first top-k's offsets (best) and the second top-k's sizes (prhs_dilate).</summary>
    public void PrhsDilate(ulong lengths, in Heads h, in PrhsSizes z, DeviceBuffer decision, DeviceBuffer domLen, DeviceBuffer frozenCount,
        DeviceBuffer best, int bestCap, DeviceBuffer dilated, int dilatedCap, DeviceBuffer dilatedCount, DeviceBuffer rowLens, DeviceBuffer ks,
        CudaStream s)
    {
        int rows = h.Rows * h.Count;
        var a = new KernelArgs();
        a.Add(rows); a.Add(decision); a.Add(domLen); a.Add(frozenCount); a.Add(lengths); a.Add(h.Count); a.Add(z.Tokens); a.Add(z.Fraction);
        a.Add(z.Rule.Sinks); a.Add(z.Rule.Local); a.Add(z.Rule.Radius); a.Add(z.Rule.Top); a.Add(best); a.Add(bestCap); a.Add(dilated);
        a.Add(dilatedCap); a.Add(dilatedCount); a.Add(rowLens); a.Add(ks);
        _module["prhs_dilate"].Launch(((rows + 127) / 128, 1, 1), 128, s, ref a);
    }

    /// <summary>PrHS's salient sets where retrieved and every head's composed list (prhs_compose).</summary>
    public void PrhsCompose(ulong lengths, in Heads h, in PrhsSizes z, DeviceBuffer decision, DeviceBuffer domStart, DeviceBuffer frozenFrom,
        DeviceBuffer frozenCount, in Lists? prev, DeviceBuffer dilated, int dilatedCap, DeviceBuffer dilatedCount, in Lists rest,
        DeviceBuffer restKs, in Lists salient, DeviceBuffer bitmap, int words, in Lists output, CudaStream s)
    {
        var a = new KernelArgs();
        a.Add(lengths); a.Add(h.Count); a.Add(z.Tokens); a.Add(z.Fraction); a.Add(z.Rule.Sinks); a.Add(z.Rule.Local); a.Add(decision);
        a.Add(domStart); a.Add(frozenFrom); a.Add(frozenCount); a.Add(prev?.Entries); a.Add(prev?.Capacity ?? 0); a.Add(dilated);
        a.Add(dilatedCap); a.Add(dilatedCount); a.Add(rest.Entries); a.Add(rest.Meta); a.Add(rest.Capacity); a.Add(restKs);
        a.Add(salient.Entries); a.Add(salient.Meta); a.Add(salient.Capacity); a.Add(bitmap); a.Add(words); a.Add(output.Entries);
        a.Add(output.Meta); a.Add(output.Capacity);
        int shared = SharedBitmapBytes(words);
        a.Add(shared > 0 ? 1 : 0);
        _module["prhs_compose"].Launch((h.Rows * h.Count, 1, 1), CandidateThreads, s, ref a, shared);
    }

    /// <summary>Dynamic shared memory for a candidate bitmap of `words` words, or 0 where it does not fit beside
    /// the kernels' static shared memory within the 48 KB a launch gets without opting in (contexts past 320K
    /// positions: the bitmap then lives in device memory).</summary>
    public static int SharedBitmapBytes(int words) => words <= MaxSharedBitmapWords ? words * 4 : 0;

    private const int MaxSharedBitmapWords = 10240;

    public void Dispose() => _module.Dispose();
}
