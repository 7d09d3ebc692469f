using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
namespace SparseDecode.Cuda.Kernels;

/// <summary>Which heads an index list (or a score row) belongs to: one per KV head, shared by its group of
/// query heads (one gather serves the group), or one per query head.</summary>
internal enum IndexHeads { KvHead, QueryHead }

/// <summary>Attention kernel variants: Split launches attn_reduce after the chunks; Fused has the last block to
/// finish combine them (one launch). Default picks <see cref="DecodeKernels.DefaultAttentionVariant"/>.</summary>
internal enum AttentionVariant { Default, Split, Fused }

/// <summary>Top-k kernels: MultiBlock splits each row over blocks (five launches); PerRow gives each row one block
/// (one launch). Auto: PerRow for rows of at most 16384 entries, and for rows up to 32768 when there are at least a
/// quarter as many rows as multiprocessors (then one block per row keeps every multiprocessor busy without the
/// split's four extra launches); MultiBlock otherwise, where a few very long rows would leave most of the GPU idle
/// (`gpu-bench` times both).</summary>
internal enum TopKAlgorithm { Auto, MultiBlock, PerRow }

/// <summary>Host side of Cuda/Kernels/decode_attention.cu: flash-decoding dense attention, sparse attention over
/// index lists, scoring (all keys or an index list), Quest page summaries and bounds, and exact top-k. Every
/// method only queues work on the stream (so it can be captured into a graph); outputs are device buffers.</summary>
internal sealed class DecodeKernels : IDisposable
{
    public const string SourceFile = "decode_attention.cu";

    /// <summary>The head size the tuned kernels of decode_attention.cu are written for (one head row is 128 bf16
    /// channels, one per thread of a block); other head sizes go through the any-shape kernels of model_step.cu.</summary>
    public const int HeadDim = 128;
    private const int Block = 128, TopKThreads = 256;
    private static readonly float Log2E = (float)(1 / Math.Log(2));

    private readonly CudaModule _module;
    public CudaDevice Device { get; }
    public bool FromCache => _module.FromCache;
    public string CompileLog => _module.CompileLog;

    public static readonly string[] KernelNames =
    [
        "attn_dense_g4", "attn_dense_g4_f", "attn_sparse_g4", "attn_sparse_g4_f", "attn_sparse_g1",
        "attn_sparse_g1_f", "attn_reduce", "topk_rows", "score_all_max", "score_all_each",
        "score_idx_max", "score_idx_each", "score_idx_g1", "score_range_g1", "score_range_max", "page_bounds_max", "page_bounds_each", "page_minmax",
        "topk_hist", "topk_count", "topk_write", "topk_pages",
        "attn_dense_g8", "attn_sparse_g8", "score_all_max_g8", "score_all_each_g8", "score_range_max_g8", "score_idx_max_g8", "score_idx_each_g8",
        "page_bounds_max_g8", "page_bounds_each_g8", "attn_runs_g4", "attn_runs_g8",
    ];

    /// <summary>The kernel for groups of `group` query heads per KV head: the _g4 kernels are instantiated for
    /// groups of 4 (Llama-3 8B) and 8 (70B; split variants only); per-query-head kernels take any group.</summary>
    private static string ForGroup(string kernel, int group)
    {
        if (group == 4 || kernel.EndsWith("_g1", StringComparison.Ordinal) || kernel.EndsWith("_g1_f", StringComparison.Ordinal)
            || kernel is "score_idx_g1" or "score_range_g1") return kernel;
        if (group != 8) throw new ArgumentException($"The tuned CUDA attention kernels take groups of 4 or 8 query heads per KV head, not {group}.");
        if (kernel.EndsWith("_f", StringComparison.Ordinal)) throw new ArgumentException("The fused attention variant exists for groups of 4 only.");
        return kernel.EndsWith("_g4", StringComparison.Ordinal) ? kernel[..^3] + "_g8" : kernel + "_g8";
    }

    public DecodeKernels(CudaDevice device)
    {
        Device = device;
        _module = CudaModule.Load(device, SourceFile);
        foreach (var n in KernelNames) BlocksPerSm(n);
        string[] staging = ["topk_rows", "topk_pages", .. ClusterCapable ? ClusterKernelNames : []];
        foreach (var n in staging) _module[n].AllowDynamicShared(TopKStageBytes(TopKStageEntries));
    }

    /// <summary>Kernels that split a row over a cluster of blocks (sm_90 and later; the source compiles them there only).</summary>
    public static readonly string[] ClusterKernelNames = ["topk_rows_c4"];

    private bool ClusterCapable => Device.ComputeMajor >= 9;

    /// <summary>Whether rows may be split over thread-block clusters (compute capability 9.0 and later; a benchmark
    /// turns it off to time the one-block rows beside them).</summary>
    public bool Clusters { get => ClusterCapable && _clusters; set => _clusters = value; }

    private bool _clusters = true;

    /// <summary>Blocks per row of the one-block-per-row top-k: 4 (a cluster sharing its shared memory) when few rows
    /// of every position, 16K or more, would leave most multiprocessors idle — a batch-1 step's 32 heads on 132 —
    /// else 1. Candidate lists stay on one block: their rows are a fraction of their capacity (LFPS's ~9K of 24K
    /// measured slower split).</summary>
    public int BlocksPerTopKRow(int rows, int rowLength, bool candidates = false) =>
        Clusters && !candidates && rowLength >= 16384 && rows * 4 <= 2 * Device.Multiprocessors ? 4 : 1;

    /// <summary>Longest row the one-block top-k stages in shared memory (dynamic, ~96 KB: two blocks of 512 threads per
    /// multiprocessor still fit); longer rows are re-read from memory on each of its passes.</summary>
    public const int TopKStageEntries = 23808;

    /// <summary>Dynamic shared memory of a top-k staging rows of up to `entries` (a padding word per 32 entries).</summary>
    public static int TopKStageBytes(int entries) => (entries + entries / 32 + 1) * 4;

    private static int StageFor(int longestSlice) => Math.Clamp(longestSlice, 1, TopKStageEntries);

    /// <summary>Longest slice of a row of `length` entries split over `blocks` (boundaries on multiples of 4).</summary>
    private static int SliceLength(int length, int blocks) => blocks == 1 ? length : length / blocks + 4;

    public CudaFunction Function(string name) => _module[name];

    /// <summary>Registers, local (spill) bytes and blocks per multiprocessor of every kernel: the resource report.</summary>
    public IEnumerable<(string Name, int Registers, int LocalBytes, int SharedBytes, int BlocksPerSm)> Resources() =>
        KernelNames.Select(n =>
        {
            var f = _module[n];
            return (n, f.Registers, f.LocalBytes, f.StaticSharedBytes, f.ActiveBlocksPerMultiprocessor(Threads(n)));
        });

    private readonly Dictionary<string, int> _blocksPerSm = new(StringComparer.Ordinal);

    /// <summary>Occupancy is asked once per kernel (and never while a stream is being captured after that).</summary>
    private int BlocksPerSm(string kernel)
    {
        if (!_blocksPerSm.TryGetValue(kernel, out int b))
            _blocksPerSm[kernel] = b = _module[kernel].ActiveBlocksPerMultiprocessor(Threads(kernel));
        return b;
    }

    private static int Threads(string kernel) =>
        kernel is "topk_rows" or "topk_pages" ? PerRowThreads : kernel.StartsWith("topk", StringComparison.Ordinal) ? TopKThreads : Block;

    private const int PerRowThreads = 512;

    /// <summary>The variant <see cref="AttentionVariant.Default"/> stands for: Split, the faster one measured so far
    /// (`gpu-bench` times both; a caller that wants the other passes it to <see cref="Attention"/>).</summary>
    public const AttentionVariant DefaultAttentionVariant = AttentionVariant.Split;

    /// <remarks>Where a row goes to a cluster of 4 blocks (see <see cref="BlocksPerTopKRow"/>), PerRow also takes rows
    /// whose four slices each fit the shared-memory stage (up to 95K entries).</remarks>
    public TopKAlgorithm ChooseTopK(int rows, int rowLength, bool candidates = false) =>
        rowLength <= 16384 || (rowLength <= 32768 && rows * 4 >= Device.Multiprocessors)
            || (BlocksPerTopKRow(rows, rowLength, candidates) == 4 && SliceLength(rowLength, 4) <= TopKStageEntries)
            ? TopKAlgorithm.PerRow : TopKAlgorithm.MultiBlock;

    private int PlanChunk(string kernel, long rows, int heads, int batch, int granularity) =>
        LaunchPlan.Chunk(rows, heads, batch, Device.Multiprocessors, BlocksPerSm(kernel), granularity);

    // ------------------------------------------------------------------------------------------ attention

    /// <summary>Partial-result buffers of flash-decoding: per (sequence, query head, chunk) a max, a sum and 128
    /// unnormalised outputs.</summary>
    public sealed class AttentionWorkspace(CudaDevice device, int batch, int queryHeads, int maxChunks) : IDisposable
    {
        /// <summary>Chunks a workspace needs for dense attention over `denseLength` keys and sparse attention over
        /// lists of `listLength` entries, by the tuned kernels (at least 256 keys or 32 entries a chunk) or the
        /// any-shape ones, for heads of `headDim` channels (128 outputs per chunk slot).</summary>
        public static int ChunksFor(int denseLength, int listLength, int headDim) =>
            (Math.Max(Math.Max(LaunchPlan.Chunks(denseLength, 256), ModelKernels.AnyChunks(denseLength)),
                Math.Max(LaunchPlan.Chunks(listLength, 32), ModelKernels.AnyChunks(listLength))) + 1) * ((headDim + 127) / 128);

        public int MaxChunks { get; } = maxChunks;
        public DeviceBuffer M { get; } = device.Allocate((long)batch * queryHeads * maxChunks * 4);
        public DeviceBuffer L { get; } = device.Allocate((long)batch * queryHeads * maxChunks * 4);
        public DeviceBuffer O { get; } = device.Allocate((long)batch * queryHeads * maxChunks * DecodeKernels.HeadDim * 4);
        /// <summary>Per (sequence, head) arrival counters of the fused variants; zero between launches.</summary>
        public DeviceBuffer Counters { get; } = device.Upload<uint>(new uint[batch * queryHeads]);

        public void Dispose()
        {
            M.Dispose();
            L.Dispose();
            O.Dispose();
            Counters.Dispose();
        }
    }

    /// <summary>Chunk (rows per block) the attention launch will use: `chunk` if positive, else planned.</summary>
    /// <remarks>Dense: one wave of blocks (every block resident at once, so no partial last wave), at least 256
    /// keys a block (the epilogue is fixed cost) and at most 2048.</remarks>
    public int AttentionChunk(in KvView kv, int rows, IndexHeads heads, bool indexed, int chunk = 0,
        AttentionVariant variant = AttentionVariant.Default)
    {
        if (chunk > 0) return chunk;
        if (variant == AttentionVariant.Default) variant = DefaultAttentionVariant;
        string k = ForGroup(KernelName(indexed, heads, variant), kv.Group);
        int y = heads == IndexHeads.KvHead ? kv.KvHeads : kv.QueryHeads;
        return indexed
            ? LaunchPlan.Chunk(rows, y, kv.Rows, Device.Multiprocessors, BlocksPerSm(k), 32, minChunk: 64, maxChunk: 2048, waves: 4)
            : LaunchPlan.Chunk(rows, y, kv.Rows, Device.Multiprocessors, BlocksPerSm(k), 64, minChunk: 256, maxChunk: 2048, waves: 1);
    }

    private static string KernelName(bool indexed, IndexHeads heads, AttentionVariant variant) => (indexed, heads, variant) switch
    {
        (false, _, AttentionVariant.Split) => "attn_dense_g4",
        (false, _, _) => "attn_dense_g4_f",
        (true, IndexHeads.KvHead, AttentionVariant.Split) => "attn_sparse_g4",
        (true, IndexHeads.KvHead, _) => "attn_sparse_g4_f",
        (true, _, AttentionVariant.Split) => "attn_sparse_g1",
        _ => "attn_sparse_g1_f",
    };

    /// <summary>Decode attention of one query per sequence: q [batch][qHeads][128] f32 → output [batch][qHeads][128]
    /// f32 and (optional) the log-sum-exp per head. Dense when `indices` is null; else over the index list
    /// [batch][kvHeads or qHeads][indexCount] (entries &lt; 0 or ≥ the length are skipped).</summary>
    public void Attention(in KvView kv, DeviceBuffer q, DeviceBuffer? indices, int indexCount, IndexHeads heads,
        DeviceBuffer output, DeviceBuffer? lse, AttentionWorkspace ws, CudaStream stream, int chunk = 0,
        AttentionVariant variant = AttentionVariant.Default)
    {
        bool indexed = indices != null;
        if (variant == AttentionVariant.Default) variant = DefaultAttentionVariant;
        int rows = indexed ? indexCount : kv.PlanLength;
        chunk = AttentionChunk(kv, rows, heads, indexed, chunk, variant);
        int chunks = LaunchPlan.Chunks(rows, chunk);
        if (chunks > ws.MaxChunks) throw new ArgumentException($"Attention needs {chunks} chunks; the workspace holds {ws.MaxChunks}.");
        int y = heads == IndexHeads.KvHead ? kv.KvHeads : kv.QueryHeads;
        string name = ForGroup(KernelName(indexed, heads, variant), kv.Group);
        var a = new KernelArgs();
        a.Add(kv.KBases); a.Add(kv.VBases); a.Add(kv.Lengths); a.Add(kv.HeadStride); a.Add(q);
        a.Add(indices); a.Add(indexCount); a.Add(y); a.Add(kv.QueryHeads); a.Add(kv.Group); a.Add(chunk); a.Add(chunks);
        a.Add((float)(Log2E / Math.Sqrt(DecodeKernels.HeadDim)));
        a.Add(ws.M); a.Add(ws.L); a.Add(ws.O); a.Add(ws.Counters); a.Add(output); a.Add(lse);
        _module[name].Launch((chunks, y, kv.Rows), Block, stream, ref a);
        if (variant == AttentionVariant.Split) Reduce(kv, ws, chunks, output, lse, stream);
    }

    /// <summary>attn_reduce: every row's and query head's `chunks` partials in `ws` combined into output (and lse); a
    /// padding copy of a row (the same cache bases and length as the row before it) gets that row's result.</summary>
    private void Reduce(in KvView kv, AttentionWorkspace ws, int chunks, DeviceBuffer output, DeviceBuffer? lse, CudaStream stream)
    {
        var r = new KernelArgs();
        r.Add(kv.KBases); r.Add(kv.Lengths); r.Add(ws.M); r.Add(ws.L); r.Add(ws.O); r.Add(chunks); r.Add(kv.QueryHeads); r.Add(output); r.Add(lse);
        _module["attn_reduce"].Launch((kv.QueryHeads, kv.Rows, 1), Block, stream, ref r);
    }

    /// <summary>Query rows one block of <see cref="RunsAttention"/> takes: 64 (four warps of 16 tensor-core rows), as
    /// tokens of one run times the group's query heads.</summary>
    public const int RunQueryRows = 64;

    /// <summary>Dense attention of rows that form dense passes, on the tensor cores (attn_runs, decode_attention.cu):
    /// q [rows][qHeads][128] f32 → output [rows][qHeads][128] f32, each row over its keys 0 .. length − 1 like
    /// <see cref="Attention"/>. Rows of one sequence at consecutive positions (one more key each) are a run; a block
    /// takes up to 64 / group tokens of a run with the group's query heads and reads each key of its chunk once for
    /// all of them. Any arrangement of rows is correct (a row alone is a run of one); the kernel finds the runs from
    /// the rows' bases and lengths on the device, so a captured graph serves every arrangement.</summary>
    public void RunsAttention(in KvView kv, DeviceBuffer q, DeviceBuffer output, AttentionWorkspace ws, CudaStream stream, int chunk = 0)
    {
        if (kv.Group is not (4 or 8)) throw new ArgumentException($"The tensor-core pass attention takes groups of 4 or 8 query heads per KV head, not {kv.Group}.");
        string name = kv.Group == 4 ? "attn_runs_g4" : "attn_runs_g8";
        // blocks that do work: at least one per run of up to 64 / group tokens, whatever the runs are
        int runBlocks = (kv.Rows * kv.Group + RunQueryRows - 1) / RunQueryRows;
        if (chunk <= 0)
            chunk = LaunchPlan.Chunk(kv.PlanLength, kv.KvHeads, runBlocks, Device.Multiprocessors, BlocksPerSm(name), 64, minChunk: 256, maxChunk: 4096, waves: 2);
        int chunks = LaunchPlan.Chunks(kv.PlanLength, chunk);
        if (chunks > ws.MaxChunks) throw new ArgumentException($"Attention needs {chunks} chunks; the workspace holds {ws.MaxChunks}.");
        var a = new KernelArgs();
        a.Add(kv.KBases); a.Add(kv.VBases); a.Add(kv.Lengths); a.Add(kv.HeadStride); a.Add(q); a.Add(kv.Rows); a.Add(kv.QueryHeads);
        a.Add(chunk); a.Add(chunks); a.Add((float)(Log2E / Math.Sqrt(DecodeKernels.HeadDim))); a.Add(ws.M); a.Add(ws.L); a.Add(ws.O);
        _module[name].Launch((chunks, kv.KvHeads, kv.Rows), Block, stream, ref a);
        Reduce(kv, ws, chunks, output, null, stream);
    }

    // ------------------------------------------------------------------------------------------ scoring

    /// <summary>Scores q·k/√d: of every key (`indices` null; out row length = the longest sequence) or of the
    /// entries of an index list. `outHeads` KvHead: one row per KV head, the max over its query heads (with
    /// per-KV-head lists); QueryHead with per-KV-head lists (listHeads KvHead): one row per query head; with
    /// per-query-head lists: one row per query head. out[(b·rows + row)·outStride + j]; skipped entries −∞.</summary>
    /// <remarks>With `listMeta` (a selection plan's lists: a (count, stamp) pair per list) each list holds its own
    /// count of entries and `indexCount` is the lists' stride; with `mask` only the output rows whose flag is set
    /// (maskKind 1) or clear (2) are written, and blocks with none return at once.</remarks>
    public void Score(in KvView kv, DeviceBuffer q, DeviceBuffer? indices, int indexCount, IndexHeads listHeads,
        IndexHeads outHeads, DeviceBuffer output, int outStride, CudaStream stream, int chunk = 0,
        DeviceBuffer? listMeta = null, DeviceBuffer? mask = null, int maskKind = 0)
    {
        bool indexed = indices != null;
        string name = (indexed, listHeads, outHeads) switch
        {
            (false, _, IndexHeads.KvHead) => "score_all_max",
            (false, _, IndexHeads.QueryHead) => "score_all_each",
            (true, IndexHeads.KvHead, IndexHeads.KvHead) => "score_idx_max",
            (true, IndexHeads.KvHead, IndexHeads.QueryHead) => "score_idx_each",
            (true, IndexHeads.QueryHead, IndexHeads.QueryHead) => "score_idx_g1",
            _ => throw new ArgumentException("Per-query-head index lists give per-query-head scores."),
        };
        name = ForGroup(name, kv.Group);
        int rows = indexed ? indexCount : kv.PlanLength;
        int y = indexed && listHeads == IndexHeads.QueryHead ? kv.QueryHeads : kv.KvHeads;
        if (chunk <= 0) chunk = PlanChunk(name, rows, y, kv.Rows, 64);
        LaunchScoreRows(name, kv, kv.KBases, 0UL, 1, kv.HeadStride, q, indices, indexCount, y, rows, chunk, output, outStride, stream,
            listMeta, mask, maskKind);
    }

    /// <summary>One launch of decode_attention.cu's score_rows kernels (SCORE_ARGS, in their order): `rows` rows per
    /// head in chunks of `chunk`, grid (chunks, y, kv.Rows).</summary>
    private void LaunchScoreRows(string name, in KvView kv, ulong aBase, ulong bBase, int rowDiv, long headStride, DeviceBuffer q,
        DeviceBuffer? indices, int indexCount, int y, int rows, int chunk, DeviceBuffer output, int outStride, CudaStream stream,
        DeviceBuffer? listMeta = null, DeviceBuffer? mask = null, int maskKind = 0, DeviceBuffer? rangeStart = null,
        DeviceBuffer? rangeLength = null)
    {
        var a = new KernelArgs();
        a.Add(aBase); a.Add(bBase); a.Add(kv.Lengths); a.Add(rowDiv); a.Add(headStride); a.Add(q);
        a.Add(indices); a.Add(indexCount); a.Add(y); a.Add(kv.QueryHeads); a.Add(kv.Group); a.Add(chunk);
        a.Add((float)(1 / Math.Sqrt(DecodeKernels.HeadDim))); a.Add(output); a.Add(outStride);
        a.Add(listMeta); a.Add(mask); a.Add(mask is null ? 0 : maskKind); a.Add(rangeStart); a.Add(rangeLength);
        _module[name].Launch((LaunchPlan.Chunks(rows, chunk), y, kv.Rows), Block, stream, ref a);
    }

    /// <summary>Scores of the keys start[l] + j, j &lt; length[l], of each head l (per query head, or per KV head as
    /// the max over its group: `heads`), into out[(batch·heads + head)·outStride + j]; ranges hold at most
    /// kv.PlanLength keys.</summary>
    public void ScoreRange(in KvView kv, DeviceBuffer q, IndexHeads heads, DeviceBuffer start, DeviceBuffer length,
        DeviceBuffer output, int outStride, CudaStream stream)
    {
        string name = ForGroup(heads == IndexHeads.QueryHead ? "score_range_g1" : "score_range_max", kv.Group);
        int y = heads == IndexHeads.QueryHead ? kv.QueryHeads : kv.KvHeads;
        int chunk = PlanChunk(name, kv.PlanLength, y, kv.Rows, 64);
        LaunchScoreRows(name, kv, kv.KBases, 0UL, 1, kv.HeadStride, q, null, 0, y, kv.PlanLength, chunk, output, outStride, stream,
            rangeStart: start, rangeLength: length);
    }

    /// <summary>Per page and channel, the min and max of the keys (into kv.PageMin / kv.PageMax).</summary>
    public void PageSummaries(in KvView kv, CudaStream stream, int pagesPerBlock = 8)
    {
        int pages = (kv.PlanLength + kv.PageSize - 1) / kv.PageSize;
        var a = new KernelArgs();
        a.Add(kv.KBases); a.Add(kv.MinBases); a.Add(kv.MaxBases); a.Add(kv.Lengths); a.Add(kv.HeadStride);
        a.Add(kv.PageHeadStride); a.Add(kv.PageSize); a.Add(pagesPerBlock);
        _module["page_minmax"].Launch((LaunchPlan.Chunks(pages, pagesPerBlock), kv.KvHeads, kv.Rows), Block, stream, ref a);
    }

    /// <summary>Quest's per-page upper bound of q·k/√d from the page summaries: one row per KV head (max over the
    /// group) or per query head; out[(b·rows + row)·outStride + page].</summary>
    public void PageBounds(in KvView kv, DeviceBuffer q, IndexHeads outHeads, DeviceBuffer output, int outStride, CudaStream stream, int chunk = 0)
    {
        string name = ForGroup(outHeads == IndexHeads.KvHead ? "page_bounds_max" : "page_bounds_each", kv.Group);
        int pages = (kv.PlanLength + kv.PageSize - 1) / kv.PageSize;
        if (chunk <= 0) chunk = PlanChunk(name, pages, kv.KvHeads, kv.Rows, 32);
        LaunchScoreRows(name, kv, kv.MinBases, kv.MaxBases, kv.PageSize, kv.PageHeadStride, q, null, 0, kv.KvHeads, pages, chunk,
            output, outStride, stream);
    }

    // ------------------------------------------------------------------------------------------ top-k

    /// <summary>Histograms and per-block counts of the radix select, sized for `rows` rows of at most
    /// `maxRowLength` entries.</summary>
    public sealed class TopKWorkspace(CudaDevice device, int rows, int maxRowLength) : IDisposable
    {
        public int Rows { get; } = rows;
        public int MaxBlocks { get; } = LaunchPlan.TopKBlocks(maxRowLength);
        public DeviceBuffer Histograms { get; } = device.Allocate((long)rows * 3 * LaunchPlan.TopKBins * 4);
        public DeviceBuffer BlockCounts { get; } = device.Allocate((long)rows * LaunchPlan.TopKBlocks(maxRowLength) * 2 * 4);

        public void Dispose()
        {
            Histograms.Dispose();
            BlockCounts.Dispose();
        }
    }

    /// <summary>What one exact top-k call selects from and writes.</summary>
    public readonly record struct TopKRequest(
        DeviceBuffer Scores, int Rows, int RowStride, int RowLength, int K, DeviceBuffer Output, int OutStride)
    {
        /// <summary>Per-row lengths (int[Rows]) instead of RowLength (which is then the longest row).</summary>
        public DeviceBuffer? RowLengths { get; init; }
        /// <summary>Entry j of a row stands for position Candidates[row·CandidateStride + j].</summary>
        public DeviceBuffer? Candidates { get; init; }
        public int CandidateStride { get; init; }
        /// <summary>Each chosen position p is written as p·Expand .. p·Expand + Expand − 1 (pages to tokens).</summary>
        public int Expand { get; init; } = 1;
        /// <summary>Per-row bound (int[Rows]): expanded positions at or past it are written as −1.</summary>
        public DeviceBuffer? Limits { get; init; }
        public TopKAlgorithm Algorithm { get; init; }
        /// <summary>Per-row k (int[Rows]) instead of K (which is then the largest); a row with k &lt; 0 is left as it is.</summary>
        public ulong Ks { get; init; }
        /// <summary>Where counts[2·row] receives the number of entries chosen (0: not written).</summary>
        public ulong Counts { get; init; }
        /// <summary>Output entries of a row from its count up to this one are written as −1.</summary>
        public int PadTo { get; init; }
        /// <summary>The output's device address, when it is not the start of <see cref="Output"/>.</summary>
        public ulong OutputAddress { get; init; }
        /// <summary>Row lengths and k computed inside the one-block top-k from a plan's sizes (as
        /// SelectionKernels.TopKSizes would write them), saving that launch; PerRow only.</summary>
        public PlanTopKSizes? Sizes { get; init; }
        /// <summary>LFPS's trigger computed beside the selection (PerRow only): a row with entries whose best score is
        /// below Reference[row·ReferenceStride] − Drop gets Flags[row] = 2.</summary>
        public TopKTrigger? Trigger { get; init; }
    }

    public readonly record struct TopKTrigger(DeviceBuffer Flags, DeviceBuffer Reference, int ReferenceStride, float Drop);

    /// <summary>A plan's top-k sizes (see selection.cu's sel_topk_sizes): `heads` rows per sequence, each of its
    /// sequence's length (Mode 0) or of its candidate list's count (Mode 1, CandidateMeta), k the budget at the
    /// sequence's length; rows the mask excludes are left as they are.</summary>
    public readonly record struct PlanTopKSizes(ulong Lengths, int Heads, int Mode, SparseDecode.Selection.Budget Budget,
        DeviceBuffer? CandidateMeta, DeviceBuffer? Mask, int MaskKind);

    /// <summary>Exact top-k per row by radix select: the chosen positions ascending (ties: lowest positions
    /// first), −1 for −∞ scores and for padding when a row has fewer than k entries.</summary>
    public void TopK(in TopKRequest r, TopKWorkspace ws, CudaStream stream)
    {
        if (r.RowStride % 4 != 0) throw new ArgumentException("Top-k rows must start on 16-byte boundaries (stride a multiple of 4).");
        if (r.Rows > ws.Rows || LaunchPlan.TopKBlocks(r.RowLength) > ws.MaxBlocks)
            throw new ArgumentException("The top-k workspace is too small for this request.");
        if (r.K < (r.Ks != 0 ? 0 : 1) || r.OutStride < Math.Max(r.K * r.Expand, r.PadTo)) throw new ArgumentException("Top-k output rows must hold k × expand entries.");
        ulong output = r.OutputAddress != 0 ? r.OutputAddress : r.Output.Pointer;
        var algorithm = r.Algorithm != TopKAlgorithm.Auto ? r.Algorithm : ChooseTopK(r.Rows, r.RowLength, r.Candidates is not null);
        if ((r.Sizes is not null || r.Trigger is not null) && algorithm != TopKAlgorithm.PerRow)
            throw new ArgumentException("Sizes and triggers computed inside the top-k take the one-block-per-row algorithm.");
        if (algorithm == TopKAlgorithm.PerRow)
        {
            var p = new KernelArgs();
            p.Add(r.Scores); p.Add(r.RowStride); p.Add(r.RowLengths); p.Add(r.RowLength); p.Add(r.K); p.Add(r.Ks); p.Add(r.Candidates);
            p.Add(r.CandidateStride); p.Add(output); p.Add(r.OutStride); p.Add(r.Expand); p.Add(r.Limits); p.Add(r.Counts); p.Add(r.PadTo);
            int per = BlocksPerTopKRow(r.Rows, r.RowLength, r.Candidates is not null);
            int stage = StageFor(SliceLength(r.RowLength, per));
            p.Add(stage);
            var z = r.Sizes.GetValueOrDefault();
            p.Add(r.Sizes is null ? 0UL : z.Lengths); p.Add(z.Heads); p.Add(z.Mode); p.Add(z.Budget.Tokens); p.Add(z.Budget.Fraction);
            p.Add(z.CandidateMeta); p.Add(z.Mask); p.Add(z.Mask is null ? 0 : z.MaskKind);
            var tr = r.Trigger.GetValueOrDefault();
            p.Add(tr.Flags); p.Add(tr.Reference); p.Add(tr.ReferenceStride); p.Add(r.Trigger is null ? 0f : tr.Drop);
            _module[per == 4 ? "topk_rows_c4" : "topk_rows"].Launch((r.Rows * per, 1, 1), PerRowThreads, stream, ref p, TopKStageBytes(stage));
            return;
        }
        int blocks = LaunchPlan.TopKBlocks(r.RowLength);
        ws.Histograms.Fill32(0, (long)r.Rows * 3 * LaunchPlan.TopKBins, stream);
        for (int pass = 0; pass < 3; pass++)
        {
            var h = new KernelArgs();
            h.Add(r.Scores); h.Add(r.RowStride); h.Add(r.RowLengths); h.Add(r.RowLength); h.Add(r.K); h.Add(r.Ks); h.Add(ws.Histograms); h.Add(pass);
            _module["topk_hist"].Launch((blocks, r.Rows, 1), TopKThreads, stream, ref h);
        }
        var c = new KernelArgs();
        c.Add(r.Scores); c.Add(r.RowStride); c.Add(r.RowLengths); c.Add(r.RowLength); c.Add(r.K); c.Add(r.Ks); c.Add(ws.Histograms);
        c.Add(ws.BlockCounts); c.Add(ws.MaxBlocks);
        _module["topk_count"].Launch((blocks, r.Rows, 1), TopKThreads, stream, ref c);
        var w = new KernelArgs();
        w.Add(r.Scores); w.Add(r.RowStride); w.Add(r.RowLengths); w.Add(r.RowLength); w.Add(r.K); w.Add(r.Ks); w.Add(ws.Histograms);
        w.Add(ws.BlockCounts); w.Add(ws.MaxBlocks); w.Add(r.Candidates); w.Add(r.CandidateStride); w.Add(output);
        w.Add(r.OutStride); w.Add(r.Expand); w.Add(r.Limits); w.Add(r.Counts); w.Add(r.PadTo);
        _module["topk_write"].Launch((blocks, r.Rows, 1), TopKThreads, stream, ref w);
    }

    /// <summary>Quest's pages for every (row, head) in one launch (topk_pages): its sizes from each sequence's length
    /// (`heads` rows per sequence) and the budget, the last page's positions in out[row][0..pageSize), and the pages of
    /// largest bound among the others (bounds [rows][boundStride]) as positions from out[row][pageSize], padded with −1
    /// to `room` entries; counts[2·row] = the chosen positions (the last page's not counted).</summary>
    public void TopPages(DeviceBuffer bounds, int boundStride, ulong lengths, int rows, int heads, SparseDecode.Selection.Budget budget,
        int pageSize, DeviceBuffer output, int outStride, int room, DeviceBuffer counts, CudaStream stream)
    {
        if (boundStride % 4 != 0) throw new ArgumentException("Page bound rows must start on 16-byte boundaries (stride a multiple of 4).");
        if (outStride < pageSize + Math.Max(0, room)) throw new ArgumentException("Page lists must hold the last page and the room after it.");
        var a = new KernelArgs();
        a.Add(bounds); a.Add(boundStride); a.Add(lengths); a.Add(heads); a.Add(budget.Tokens); a.Add(budget.Fraction); a.Add(pageSize);
        a.Add(output); a.Add(outStride); a.Add(room); a.Add(counts);
        int stage = StageFor(boundStride);   // a row's pages (less the last) never exceed its stride
        a.Add(stage);
        _module["topk_pages"].Launch((rows * heads, 1, 1), PerRowThreads, stream, ref a, TopKStageBytes(stage));
    }

    public void Dispose() => _module.Dispose();
}
