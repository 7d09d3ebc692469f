using SparseDecode.Cuda;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>Per-layer timings of the decode kernels at Llama-3.1-8B head shapes (32 query heads, 8 KV heads,
/// head_dim 128, bf16 cache), each beside its bandwidth floor: the bytes the operation must read (and write) over
/// the device-copy bandwidth measured in the same run. Every operation is captured `OpsPerGraph` times into one
/// CUDA graph, rotating among enough copies of the cache that L2 cannot hold them, and timed with events; the
/// median of `Repetitions` graph replays, divided by the operations per graph, is reported.</summary>
internal sealed class GpuDecodeBench
{
    public sealed record Options
    {
        public int[] Contexts { get; init; } = [8192, 32768, 131072];
        /// <summary>(context, batch) cases of several sequences per step.</summary>
        public (int Context, int Batch)[] Batched { get; init; } = [(32768, 8)];
        public int Budget { get; init; } = 2048;
        /// <summary>LFPS candidates per KV head, as a multiple of the budget.</summary>
        public int CandidateFactor { get; init; } = 3;
        public int PageSize { get; init; } = 16;
        /// <summary>PrHS: retrieval (full scores + top-k) once per this many steps (CIS block).</summary>
        public int PrhsBlock { get; init; } = 16;
        /// <summary>Tidal: full-score selection layers per model depth.</summary>
        public int TidalSelectionLayers { get; init; } = 2;
        public int Layers { get; init; } = 32;
        public int OpsPerGraph { get; init; } = 24;
        public int Repetitions { get; init; } = 15;
        public int[] DenseChunks { get; init; } = [1024, 4096];
        public int[] SparseChunks { get; init; } = [128, 256];
        public long RotationBytes { get; init; } = 512L << 20;
        public Action<string>? Log { get; init; }
    }

    /// <summary>FloorMilliseconds: bytes ÷ the device-copy bandwidth (read + written); ReadFloorMilliseconds:
    /// bytes ÷ the read-only bandwidth, which is higher, so the stricter floor for kernels that mostly read.</summary>
    public sealed record Row(int Context, int Batch, string Operation, double Milliseconds, double FloorMilliseconds,
        double ReadFloorMilliseconds, double Bytes, double Spread, string Note)
    {
        public double OverFloor => FloorMilliseconds > 0 ? Milliseconds / FloorMilliseconds : double.NaN;
        public double OverReadFloor => ReadFloorMilliseconds > 0 ? Milliseconds / ReadFloorMilliseconds : double.NaN;
    }

    private readonly DecodeKernels _k;
    private readonly Options _o;
    private const int KvHeads = 8, QueryHeads = 32;

    public double CopyBandwidth { get; private set; }
    public double ReadBandwidth { get; private set; }
    public List<Row> Rows { get; } = [];
    public List<GpuSelfCheck.Result> SpotChecks { get; } = [];

    public GpuDecodeBench(DecodeKernels kernels, Options options)
    {
        _k = kernels;
        _o = options;
    }

    private void Log(string s) => _o.Log?.Invoke(s);

    // the random-data and read kernels, loaded for one Run
    private DiagnosticKernels _random = null!;

    public void Run()
    {
        var dev = _k.Device;
        using var random = _random = new DiagnosticKernels(dev);
        using var stream = new CudaStream(dev);
        using var timer = new CudaTimer(dev);
        CopyBandwidth = MeasureCopy(stream, timer);
        Log($"device copy: {CopyBandwidth / 1e12:F3} TB/s (bytes read + written); device read: {ReadBandwidth / 1e12:F3} TB/s");
        foreach (var n in _o.Contexts) Context(stream, timer, n, 1);
        foreach (var (n, b) in _o.Batched) Context(stream, timer, n, b);
    }

    private double MeasureCopy(CudaStream s, CudaTimer t)
    {
        long bytes = 1L << 30;
        using var a = _k.Device.Allocate(bytes);
        using var b = _k.Device.Allocate(bytes);
        _random.FillRandomF32(a, bytes / 4, 7, 1, s);
        double ms = Time(s, t, 4, i => { if (i % 2 == 0) s.CopyAsync(b, a, bytes); else s.CopyAsync(a, b, bytes); }, out _);
        using var sink = _k.Device.Allocate(16);
        double read = Time(s, t, 4, i => _random.ReadAll(i % 2 == 0 ? a : b, bytes, sink, s), out _);
        ReadBandwidth = bytes / (read * 1e-3);
        return 2.0 * bytes / (ms * 1e-3);
    }

    /// <summary>Median milliseconds per operation: `ops` operations captured in one graph, replayed.</summary>
    private double Time(CudaStream s, CudaTimer t, int ops, Action<int> enqueue, out double spread)
    {
        using var g = s.Capture(() => { for (int i = 0; i < ops; i++) enqueue(i); });
        return t.MedianReplay(g, s, _o.Repetitions, out spread) / ops;
    }

    private void Add(int n, int batch, string op, double ms, double bytes, double spread, string note = "")
    {
        var row = new Row(n, batch, op, ms, bytes / CopyBandwidth * 1e3, bytes / ReadBandwidth * 1e3, bytes, spread, note);
        Rows.Add(row);
        Log($"  {n,7} b{batch} {op,-52} {ms * 1e3,9:F1} us  floor {row.FloorMilliseconds * 1e3,8:F1} / read {row.ReadFloorMilliseconds * 1e3,8:F1} us  x{row.OverFloor,5:F2} / x{row.OverReadFloor,5:F2}  spread {spread * 100:F0}%  {note}");
    }

    private void Context(CudaStream s, CudaTimer t, int n, int batch)
    {
        var dev = _k.Device;
        int budget = _o.Budget, ps = _o.PageSize, pages = (n + ps - 1) / ps;
        int cands = Math.Min(n, budget * _o.CandidateFactor);
        var lengths = Enumerable.Repeat(n, batch).ToArray();
        long kvBytes = (long)batch * KvHeads * n * 128 * 2 * 2;
        int sets = (int)Math.Clamp((_o.RotationBytes + kvBytes - 1) / kvBytes, 2, 16);
        int ops = (_o.OpsPerGraph + sets - 1) / sets * sets;
        Log($"context {n}, batch {batch}: {sets} cache copies of {kvBytes / 1e6:F1} MB rotated, {ops} operations per graph");

        var kv = new KvLayerBatch[sets];
        var rng = new Random(n + batch);
        try
        {
            for (int i = 0; i < sets; i++)
            {
                kv[i] = new KvLayerBatch(dev, batch, KvHeads, QueryHeads, n, ps, lengths);
                _random.FillRandomBf16(kv[i].K, kv[i].K.Bytes / 2, (uint)(3 * i + 1), 1f, s);
                _random.FillRandomBf16(kv[i].V, kv[i].V.Bytes / 2, (uint)(3 * i + 2), 1f, s);
                _k.PageSummaries(kv[i], s);
            }
            using var q = dev.Allocate((long)batch * QueryHeads * 128 * 4);
            _random.FillRandomF32(q, batch * QueryHeads * 128, 99, 2f, s);
            int strideN = LaunchPlan.ScoreStride(n), strideP = LaunchPlan.ScoreStride(pages), strideC = LaunchPlan.ScoreStride(cands);
            int rowsKv = batch * KvHeads, rowsQ = batch * QueryHeads;
            using var scoresQ = dev.Allocate((long)rowsQ * strideN * 4);
            using var scoresKv = dev.Allocate((long)rowsKv * strideN * 4);
            using var scoresC = dev.Allocate((long)rowsQ * strideC * 4);
            using var bounds = dev.Allocate((long)rowsQ * strideP * 4);
            _random.FillRandomF32(scoresQ, (long)rowsQ * strideN, 5, 3f, s);
            using var outAttn = dev.Allocate((long)rowsQ * 128 * 4);
            using var ws = new DecodeKernels.AttentionWorkspace(dev, batch, QueryHeads, LaunchPlan.Chunks(Math.Max(n, budget), 32));
            using var tkN = new DecodeKernels.TopKWorkspace(dev, rowsQ, n);
            // fixed random index lists: per KV head (budget), per query head (budget), LFPS candidates (ascending)
            using var idxKv = dev.Upload<int>(SortedLists(rng, rowsKv, budget, n));
            using var idxQ = dev.Upload<int>(SortedLists(rng, rowsQ, budget, n));
            using var candidates = dev.Upload<int>(SortedLists(rng, rowsKv, cands, n));
            using var selected = dev.Allocate((long)rowsKv * budget * 4);
            using var selectedQ = dev.Allocate((long)rowsQ * budget * 4);
            using var lens = dev.Upload<int>(Enumerable.Repeat(n, rowsQ).ToArray());
            s.Synchronize();

            double dense = kvBytes, keyBytes = kvBytes / 2;
            double sparseKv = (double)rowsKv * budget * (512 + 4), sparseQ = (double)rowsQ * budget * (512 + 4);
            double summaries = (double)rowsKv * pages * 512;
            double d;

            // dense attention: the planned launch of each variant, then the fused one at fixed chunks; one
            // stream-ordered run without a graph
            double best = double.MaxValue;
            string bestName = "";
            var denseCases = new List<(AttentionVariant V, int Chunk)> { (AttentionVariant.Default, 0) };
            foreach (var v in new[] { AttentionVariant.Split, AttentionVariant.Fused })
            {
                if (v != DecodeKernels.DefaultAttentionVariant) denseCases.Add((v, 0));
                denseCases.AddRange(_o.DenseChunks.Select(c => (v, c)));
            }
            foreach (var (variant, chunk) in denseCases)
            {
                int c = _k.AttentionChunk(kv[0], n, IndexHeads.KvHead, false, chunk, variant);
                if (chunk > 0 && c == _k.AttentionChunk(kv[0], n, IndexHeads.KvHead, false, 0)) continue; // the planned one
                double ms = Time(s, t, ops, i => _k.Attention(kv[i % sets], q, null, 0, IndexHeads.KvHead, outAttn, null, ws, s, chunk, variant), out d);
                var shown = variant == AttentionVariant.Default ? DecodeKernels.DefaultAttentionVariant : variant;
                string name = variant == AttentionVariant.Default ? "dense attention"
                    : chunk == 0 ? $"dense attention, {variant}" : $"dense attention, {variant}, chunk {chunk}";
                Add(n, batch, name, ms, dense, d, $"{shown}, chunk {c}, {LaunchPlan.Chunks(n, c) * KvHeads * batch} blocks");
                if (ms < best) { best = ms; bestName = $"{shown}, chunk {c}"; }
            }
            Add(n, batch, "dense attention, best variant", best, dense, 0, bestName);
            {
                int reps = 40;
                s.Synchronize();
                t.Start(s);
                for (int i = 0; i < reps; i++) _k.Attention(kv[i % sets], q, null, 0, IndexHeads.KvHead, outAttn, null, ws, s);
                t.Stop(s);
                Add(n, batch, "dense attention, stream launches (no graph)", t.ElapsedMilliseconds() / reps, dense, 0, "launch gaps included");
            }

            // sparse attention at the budget: planned (fused), split, fixed chunks
            double sparseMs = Time(s, t, ops, i => _k.Attention(kv[i % sets], q, idxKv, budget, IndexHeads.KvHead, outAttn, null, ws, s), out d);
            Add(n, batch, $"sparse attention {budget}, per-KV-head lists", sparseMs, sparseKv, d,
                $"chunk {_k.AttentionChunk(kv[0], budget, IndexHeads.KvHead, true)}");
            foreach (var v in new[] { AttentionVariant.Split, AttentionVariant.Fused })
                foreach (int chunk in _o.SparseChunks.Prepend(0))
                {
                    if (chunk == 0 && v == DecodeKernels.DefaultAttentionVariant) continue;
                    double ms = Time(s, t, ops, i => _k.Attention(kv[i % sets], q, idxKv, budget, IndexHeads.KvHead, outAttn, null, ws, s, chunk, v), out d);
                    int c = _k.AttentionChunk(kv[0], budget, IndexHeads.KvHead, true, chunk, v);
                    Add(n, batch, $"sparse attention {budget}, per-KV-head, {v}{(chunk > 0 ? $", chunk {chunk}" : "")}", ms, sparseKv, d,
                        $"chunk {c}, {LaunchPlan.Chunks(budget, c) * KvHeads * batch} blocks");
                }
            double sparseQMs = Time(s, t, ops, i => _k.Attention(kv[i % sets], q, idxQ, budget, IndexHeads.QueryHead, outAttn, null, ws, s), out d);
            Add(n, batch, $"sparse attention {budget}, per-query-head lists", sparseQMs, sparseQ, d);

            // scoring and exact top-k
            double scoreAll = Time(s, t, ops, i => _k.Score(kv[i % sets], q, null, 0, IndexHeads.KvHead, IndexHeads.KvHead, scoresKv, strideN, s), out d);
            Add(n, batch, "scores of all keys (max over group)", scoreAll, keyBytes + rowsKv * (double)n * 4, d);
            foreach (var alg in new[] { TopKAlgorithm.Auto, TopKAlgorithm.MultiBlock, TopKAlgorithm.PerRow })
            {
                string suffix = alg == TopKAlgorithm.Auto ? "" : $", {alg}";
                double topQ = Time(s, t, ops, _ => _k.TopK(new(scoresQ, rowsQ, strideN, n, budget, selectedQ, budget) { Algorithm = alg }, tkN, s), out d);
                Add(n, batch, $"exact top-{budget} of [{rowsQ}][{n}] f32{suffix}", topQ, rowsQ * (double)n * 4 + rowsQ * budget * 4.0, d, "scores resident in L2 when ≤ 50 MB");
                double topKv = Time(s, t, ops, _ => _k.TopK(new(scoresKv, rowsKv, strideN, n, budget, selected, budget) { Algorithm = alg }, tkN, s), out d);
                Add(n, batch, $"exact top-{budget} of [{rowsKv}][{n}] f32{suffix}", topKv, rowsKv * (double)n * 4 + rowsKv * budget * 4.0, d);
            }

            // TidalDecode: a selection layer = full scores + top-k; paid in 2 of 32 layers
            double tidalSel = Time(s, t, ops, i =>
            {
                _k.Score(kv[i % sets], q, null, 0, IndexHeads.KvHead, IndexHeads.KvHead, scoresKv, strideN, s);
                _k.TopK(new(scoresKv, rowsKv, strideN, n, budget, selected, budget), tkN, s);
            }, out d);
            double tidalSelBytes = keyBytes + rowsKv * (double)n * 8;
            Add(n, batch, "tidal selection (scores + top-k), one layer", tidalSel, tidalSelBytes, d);
            double share = (double)_o.TidalSelectionLayers / _o.Layers;
            Add(n, batch, "tidal selection, amortised per layer", tidalSel * share, tidalSelBytes * share, 0, $"× {_o.TidalSelectionLayers}/{_o.Layers}");

            // LFPS: exact scores of the candidates, top-k among them
            double lfpsBytes = rowsKv * (double)cands * (256 + 4 + 8);
            double lfpsSel = Time(s, t, ops, i =>
            {
                _k.Score(kv[i % sets], q, candidates, cands, IndexHeads.KvHead, IndexHeads.KvHead, scoresC, strideC, s);
                _k.TopK(new(scoresC, rowsKv, strideC, cands, budget, selected, budget) { Candidates = candidates, CandidateStride = cands }, tkN, s);
            }, out d);
            Add(n, batch, $"lfps selection ({cands} candidates)", lfpsSel, lfpsBytes, d);
            double lfpsStep = Time(s, t, ops, i =>
            {
                _k.Score(kv[i % sets], q, candidates, cands, IndexHeads.KvHead, IndexHeads.KvHead, scoresC, strideC, s);
                _k.TopK(new(scoresC, rowsKv, strideC, cands, budget, selected, budget) { Candidates = candidates, CandidateStride = cands }, tkN, s);
                _k.Attention(kv[i % sets], q, selected, budget, IndexHeads.KvHead, outAttn, null, ws, s);
            }, out d);
            Add(n, batch, "lfps layer (selection + sparse attention)", lfpsStep, lfpsBytes + sparseKv, d);

            // Quest: page bounds, top pages, their tokens
            int topPages = budget / ps;
            double questBytes = summaries + rowsKv * (double)pages * 8;
            double questSel = Time(s, t, ops, i =>
            {
                _k.PageBounds(kv[i % sets], q, IndexHeads.KvHead, bounds, strideP, s);
                _k.TopK(new(bounds, rowsKv, strideP, pages, topPages, selected, budget) { Expand = ps, Limits = lens }, tkN, s);
            }, out d);
            Add(n, batch, $"quest selection (bounds + top-{topPages} pages)", questSel, questBytes, d);
            double questStep = Time(s, t, ops, i =>
            {
                _k.PageBounds(kv[i % sets], q, IndexHeads.KvHead, bounds, strideP, s);
                _k.TopK(new(bounds, rowsKv, strideP, pages, topPages, selected, budget) { Expand = ps, Limits = lens }, tkN, s);
                _k.Attention(kv[i % sets], q, selected, budget, IndexHeads.KvHead, outAttn, null, ws, s);
            }, out d);
            Add(n, batch, "quest layer (selection + sparse attention)", questStep, questBytes + sparseKv, d);

            // PrHS: a retrieval (full scores + top-k) once per CIS block; the steps between share it
            double prhsSel = tidalSel / _o.PrhsBlock;
            Add(n, batch, "prhs selection, amortised per step", prhsSel, tidalSelBytes / _o.PrhsBlock, 0, $"retrieval/{_o.PrhsBlock}");

            // per-layer totals as each method pays them
            double tidalLayer = sparseMs + tidalSel * share;
            Add(n, batch, "= tidal layer (sparse + amortised selection)", tidalLayer, sparseKv + tidalSelBytes * share, 0, $"{best / tidalLayer:F1}× vs best dense");
            Add(n, batch, "= lfps layer", lfpsStep, lfpsBytes + sparseKv, 0, $"{best / lfpsStep:F1}× vs best dense");
            Add(n, batch, "= quest layer", questStep, questBytes + sparseKv, 0, $"{best / questStep:F1}× vs best dense");
            double prhsLayer = sparseMs + prhsSel;
            Add(n, batch, "= prhs layer (sparse + amortised selection)", prhsLayer, sparseKv + tidalSelBytes / _o.PrhsBlock, 0, $"{best / prhsLayer:F1}× vs best dense");

            if (batch == 1) SpotCheck(kv[0], q, idxKv, scoresKv, strideN, selected, n, budget, ws, tkN, s);
        }
        finally
        {
            foreach (var x in kv) x?.Dispose();
        }
    }

    /// <summary>At the benchmark's own sizes: dense and sparse attention of a few heads and the top-k of one row
    /// against the f64 reference (downloading only the heads checked).</summary>
    private void SpotCheck(KvLayerBatch kv, DeviceBuffer q, DeviceBuffer idxKv, DeviceBuffer scoresKv, int strideN,
        DeviceBuffer selected, int n, int budget, DecodeKernels.AttentionWorkspace ws, DecodeKernels.TopKWorkspace tk, CudaStream s)
    {
        var dev = _k.Device;
        using var outD = dev.Allocate(QueryHeads * 128 * 4);
        var layout = new GpuReference.Layout(1, KvHeads, QueryHeads, n, _o.PageSize);
        var qh = q.Download<float>(QueryHeads * 128);
        int[] heads = [0, 13, 31];
        // host copies of the checked KV heads only
        var k = new ushort[(long)KvHeads * n * 128];
        var v = new ushort[k.Length];
        foreach (int h in heads.Select(x => x / 4).Distinct())
        {
            kv.K.Download<ushort>(k.AsSpan((int)layout.Offset(0, h, 0), n * 128), layout.Offset(0, h, 0) * 2);
            kv.V.Download<ushort>(v.AsSpan((int)layout.Offset(0, h, 0), n * 128), layout.Offset(0, h, 0) * 2);
        }
        var idx = idxKv.Download<int>(KvHeads * budget);
        foreach (bool sparse in new[] { false, true })
        {
            outD.Fill32(0xFFFFFFFF, QueryHeads * 128, s);
            _k.Attention(kv, q, sparse ? idxKv : null, budget, IndexHeads.KvHead, outD, null, ws, s);
            var got = outD.Download<float>(QueryHeads * 128);
            var g = new List<float>();
            var r = new List<double>();
            var o = new double[128];
            foreach (int h in heads)
            {
                GpuReference.Attention(layout, k, v, n, qh, 0, h, sparse ? idx.AsSpan(h / 4 * budget, budget) : default, !sparse, o);
                g.AddRange(got.AsSpan(h * 128, 128).ToArray());
                r.AddRange(o);
            }
            SpotChecks.Add(new($"{n}: {(sparse ? "sparse" : "dense")} attention, heads 0/13/31", GpuReference.RelativeError(g.ToArray(), r.ToArray()), GpuSelfCheck.Tolerance, ""));
        }
        _k.Score(kv, q, null, 0, IndexHeads.KvHead, IndexHeads.KvHead, scoresKv, strideN, s);
        selected.Fill32(0x7FFFFFFF, KvHeads * budget, s);
        _k.TopK(new(scoresKv, KvHeads, strideN, n, budget, selected, budget), tk, s);
        var sc = scoresKv.Download<float>(strideN);
        var sel = selected.Download<int>(budget);
        var want = GpuReference.TopK(sc.AsSpan(0, n), default, budget);
        int wrong = want.Where((w, i) => sel[i] != w).Count();
        SpotChecks.Add(new($"{n}: top-{budget} of KV head 0's scores", wrong, 0, $"{wrong} positions differ"));
        var refScores = Enumerable.Range(0, Math.Min(n, 4096)).Select(p => Enumerable.Range(0, 4).Max(h => GpuReference.Score(layout, k, n, qh, 0, h, p))).ToArray();
        SpotChecks.Add(new($"{n}: scores of KV head 0 (first 4096 keys)", GpuReference.RelativeError(sc.AsSpan(0, refScores.Length), refScores), GpuSelfCheck.Tolerance, ""));
    }

    /// <summary>Sorted random position lists (rows of `count` distinct positions below n; -1 pads rows longer than n).</summary>
    public static int[] SortedLists(Random rng, int rows, int count, int n)
    {
        var all = new int[rows * count];
        var pick = new HashSet<int>();
        for (int r = 0; r < rows; r++)
        {
            pick.Clear();
            if (count >= n) for (int p = 0; p < count; p++) pick.Add(p < n ? p : -1 - p);
            while (pick.Count < count) pick.Add(rng.Next(n));
            pick.Select(p => p < 0 ? -1 : p).Order().ToArray().CopyTo(all, r * count);
        }
        return all;
    }
}
