using SparseDecode.Cuda;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>Checks every decode kernel against <see cref="GpuReference"/> on fresh random inputs: odd lengths, a
/// batch of unequal sequences, skipped index entries, ties, −∞ scores, k above the row length. Outputs are
/// poisoned first (NaN for floats, int.MaxValue for positions) so an unwritten element fails. Used by
/// `sparsedecode gpu-bench` and by the GPU tests.</summary>
internal static class GpuSelfCheck
{
    public sealed record Result(string Name, double Error, double Threshold, string Detail)
    {
        public bool Passed => Error <= Threshold;
    }

    /// <summary>f32 arithmetic over exact bf16 inputs: the error is rounding only, far under this.</summary>
    public const double Tolerance = 1e-4;

    public static List<Result> Run(DecodeKernels kernels, int seed = 1234)
    {
        var results = new List<Result>();
        var dev = kernels.Device;
        using var stream = new CudaStream(dev);
        var rng = new Random(seed);
        var layout = new GpuReference.Layout(Batch: 3, KvHeads: 8, QueryHeads: 32, Capacity: 5008, PageSize: 16);
        int[] lengths = [1, 777, 5003];
        using var kv = new KvLayerBatch(dev, layout.Batch, layout.KvHeads, layout.QueryHeads, layout.Capacity, layout.PageSize, lengths);
        long elems = (long)layout.Batch * layout.KvHeads * layout.Capacity * 128;
        var k = new ushort[elems];
        var v = new ushort[elems];
        for (long i = 0; i < elems; i++)
        {
            k[i] = GpuReference.ToBf16((float)(rng.NextDouble() * 2 - 1));
            v[i] = GpuReference.ToBf16((float)(rng.NextDouble() * 2 - 1));
        }
        // a few strongly attended keys, so softmax is far from uniform
        for (int t = 0; t < 64; t++)
        {
            int b = rng.Next(layout.Batch), h = rng.Next(layout.KvHeads), p = rng.Next(Math.Max(1, lengths[b]));
            for (int e = 0; e < 128; e++) k[layout.Offset(b, h, p) + e] = GpuReference.ToBf16((float)(rng.NextDouble() * 8 - 4));
        }
        kv.K.Upload<ushort>(k);
        kv.V.Upload<ushort>(v);
        var q = new float[layout.Batch * layout.QueryHeads * 128];
        for (int i = 0; i < q.Length; i++) q[i] = (float)((rng.NextDouble() * 2 - 1) * 4);
        using var qd = dev.Upload<float>(q);
        int qh = layout.QueryHeads, kvh = layout.KvHeads, B = layout.Batch;

        using var outD = dev.Allocate((long)B * qh * 128 * 4);
        using var lseD = dev.Allocate((long)B * qh * 4);
        using var ws = new DecodeKernels.AttentionWorkspace(dev, B, qh, 512);

        // ---- dense attention: every variant, planned and forced chunks
        foreach (var variant in new[] { AttentionVariant.Fused, AttentionVariant.Split })
        foreach (int chunk in new[] { 0, 64, 1000 })
        {
            outD.Fill32(0xFFFFFFFF, B * qh * 128, stream);
            lseD.Fill32(0xFFFFFFFF, B * qh, stream);
            kernels.Attention(kv, qd, null, 0, IndexHeads.KvHead, outD, lseD, ws, stream, chunk, variant);
            var got = outD.Download<float>(B * qh * 128);
            var gotLse = lseD.Download<float>(B * qh);
            var reference = new double[got.Length];
            var refLse = new double[B * qh];
            for (int b = 0; b < B; b++)
                for (int h = 0; h < qh; h++)
                    refLse[b * qh + h] = GpuReference.Attention(layout, k, v, lengths[b], q, b, h, default, true,
                        reference.AsSpan((b * qh + h) * 128, 128));
            string what = $"{variant}, chunk {(chunk == 0 ? "planned" : chunk)}";
            results.Add(new($"dense attention ({what})", GpuReference.RelativeError(got, reference), Tolerance, "3 sequences, lengths 1/777/5003"));
            results.Add(new($"dense attention log-sum-exp ({what})", GpuReference.RelativeError(gotLse, refLse), Tolerance, ""));
        }

        // ---- dense passes on the tensor cores: runs of one sequence's consecutive positions (one longer than a
        // block's 16 tokens), padding copies of a run's last row, a short run and a lone first position
        {
            var rowSeq = new List<int>();
            var rowLen = new List<int>();
            void AddRun(int b, int from, int count) { for (int i = 0; i < count; i++) { rowSeq.Add(b); rowLen.Add(from + i); } }
            void Copies(int count) { for (int i = 0; i < count; i++) { rowSeq.Add(rowSeq[^1]); rowLen.Add(rowLen[^1]); } }
            AddRun(2, lengths[2] - 22, 23);
            Copies(1);
            AddRun(1, lengths[1] - 4, 5);
            Copies(2);
            AddRun(0, 1, 1);
            int rows = rowSeq.Count;
            using var kb = dev.Upload<ulong>(rowSeq.Select(b => kv.K.At(b * kv.SequenceBytes)).ToArray());
            using var vb = dev.Upload<ulong>(rowSeq.Select(b => kv.V.At(b * kv.SequenceBytes)).ToArray());
            using var lens = dev.Upload<int>(rowLen.ToArray());
            var runs = new KvView(kb.Pointer, vb.Pointer, 0, 0, lens.Pointer, kv.HeadStride, kv.PageHeadStride, kv.PageSize, rows, kvh, qh, lengths.Max());
            var qr = new float[rows * qh * 128];
            for (int i = 0; i < qr.Length; i++) qr[i] = (float)((rng.NextDouble() * 2 - 1) * 4);
            // a padding copy repeats its row's token at its position, so its query is that row's too
            for (int r = 1; r < rows; r++)
                if (rowSeq[r] == rowSeq[r - 1] && rowLen[r] == rowLen[r - 1]) Array.Copy(qr, (r - 1) * qh * 128, qr, r * qh * 128, qh * 128);
            using var qrD = dev.Upload<float>(qr);
            using var outR = dev.Allocate((long)rows * qh * 128 * 4);
            using var wsR = new DecodeKernels.AttentionWorkspace(dev, rows, qh, 512);
            var reference = new double[rows * qh * 128];
            var one = new float[B * qh * 128];
            for (int r = 0; r < rows; r++)
            {
                Array.Copy(qr, r * qh * 128, one, rowSeq[r] * qh * 128, qh * 128);
                for (int h = 0; h < qh; h++)
                    GpuReference.Attention(layout, k, v, rowLen[r], one, rowSeq[r], h, default, true, reference.AsSpan((r * qh + h) * 128, 128));
            }
            foreach (int chunk in new[] { 0, 64, 1000 })
            {
                outR.Fill32(0xFFFFFFFF, rows * qh * 128, stream);
                kernels.RunsAttention(runs, qrD, outR, wsR, stream, chunk);
                var got = outR.Download<float>(rows * qh * 128);
                // the rows whose own error is past the tolerance, so a failure says which part of the arrangement broke
                var off = Enumerable.Range(0, rows).Select(r => (r, e: GpuReference.RelativeError(got.AsSpan(r * qh * 128, qh * 128),
                    reference.AsSpan(r * qh * 128, qh * 128)))).Where(x => !(x.e <= Tolerance)).Select(x => $"{x.r} ({x.e:G2})").ToArray();
                results.Add(new($"dense passes on the tensor cores (chunk {(chunk == 0 ? "planned" : chunk)})", GpuReference.RelativeError(got, reference), Tolerance,
                    $"{rows} rows: runs of 23 (then a padding copy), 5 (then two) and 1" + (off.Length > 0 ? $"; rows off: {string.Join(", ", off)}" : "")));
            }
        }

        // ---- sparse attention over per-KV-head and per-query-head lists (with skipped entries)
        foreach (var variant in new[] { AttentionVariant.Fused, AttentionVariant.Split })
        foreach (var heads in new[] { IndexHeads.KvHead, IndexHeads.QueryHead })
        {
            int rows = heads == IndexHeads.KvHead ? kvh : qh, count = 300;
            var idx = RandomLists(rng, B, rows, count, lengths, withSkips: true);
            using var idxD = dev.Upload<int>(idx);
            outD.Fill32(0xFFFFFFFF, B * qh * 128, stream);
            kernels.Attention(kv, qd, idxD, count, heads, outD, lseD, ws, stream, 0, variant);
            var got = outD.Download<float>(B * qh * 128);
            var reference = new double[got.Length];
            for (int b = 0; b < B; b++)
                for (int h = 0; h < qh; h++)
                {
                    int row = heads == IndexHeads.KvHead ? h / layout.Group : h;
                    GpuReference.Attention(layout, k, v, lengths[b], q, b, h, idx.AsSpan((b * rows + row) * count, count), false,
                        reference.AsSpan((b * qh + h) * 128, 128));
                }
            results.Add(new($"sparse attention ({variant}), per-{(heads == IndexHeads.KvHead ? "KV" : "query")}-head lists", GpuReference.RelativeError(got, reference), Tolerance, $"{count} entries, some skipped"));
        }

        // ---- scores: all keys (max over group / each head), index lists
        int stride = LaunchPlan.ScoreStride(lengths.Max());
        using var scoresD = dev.Allocate((long)B * qh * stride * 4);
        foreach (var outHeads in new[] { IndexHeads.KvHead, IndexHeads.QueryHead })
        {
            int rows = outHeads == IndexHeads.KvHead ? kvh : qh;
            scoresD.Fill32(0xFFFFFFFF, (long)B * rows * stride, stream);
            kernels.Score(kv, qd, null, 0, IndexHeads.KvHead, outHeads, scoresD, stride, stream);
            var got = scoresD.Download<float>(B * rows * stride);
            var gotUsed = new List<float>();
            var reference = new List<double>();
            for (int b = 0; b < B; b++)
                for (int r = 0; r < rows; r++)
                    for (int p = 0; p < lengths[b]; p++)
                    {
                        gotUsed.Add(got[(b * rows + r) * stride + p]);
                        reference.Add(outHeads == IndexHeads.KvHead
                            ? Enumerable.Range(r * layout.Group, layout.Group).Max(h => GpuReference.Score(layout, k, lengths[b], q, b, h, p))
                            : GpuReference.Score(layout, k, lengths[b], q, b, r, p));
                    }
            results.Add(new($"scores of all keys ({(outHeads == IndexHeads.KvHead ? "max over group" : "per query head")})",
                GpuReference.RelativeError(gotUsed.ToArray(), reference.ToArray()), Tolerance, ""));
        }
        foreach (var (listHeads, outHeads) in new[] { (IndexHeads.KvHead, IndexHeads.KvHead), (IndexHeads.KvHead, IndexHeads.QueryHead), (IndexHeads.QueryHead, IndexHeads.QueryHead) })
        {
            int listRows = listHeads == IndexHeads.KvHead ? kvh : qh, outRows = outHeads == IndexHeads.KvHead ? kvh : qh, count = 517;
            int cs = LaunchPlan.ScoreStride(count);
            var idx = RandomLists(rng, B, listRows, count, lengths, withSkips: true);
            using var idxD = dev.Upload<int>(idx);
            scoresD.Fill32(0xFFFFFFFF, (long)B * outRows * cs, stream);
            kernels.Score(kv, qd, idxD, count, listHeads, outHeads, scoresD, cs, stream);
            var got = scoresD.Download<float>(B * outRows * cs);
            var gotUsed = new List<float>();
            var reference = new List<double>();
            for (int b = 0; b < B; b++)
                for (int r = 0; r < outRows; r++)
                    for (int j = 0; j < count; j++)
                    {
                        gotUsed.Add(got[(b * outRows + r) * cs + j]);
                        int listRow = listHeads == IndexHeads.QueryHead ? r : outHeads == IndexHeads.KvHead ? r : r / layout.Group;
                        int p = idx[(b * listRows + listRow) * count + j];
                        reference.Add(outHeads == IndexHeads.KvHead
                            ? Enumerable.Range(r * layout.Group, layout.Group).Max(h => GpuReference.Score(layout, k, lengths[b], q, b, h, p))
                            : GpuReference.Score(layout, k, lengths[b], q, b, r, p));
                    }
            results.Add(new($"scores of index lists (per-{(listHeads == IndexHeads.KvHead ? "KV" : "query")}-head lists, {(outHeads == IndexHeads.KvHead ? "max over group" : "per query head")})",
                GpuReference.RelativeError(gotUsed.ToArray(), reference.ToArray()), Tolerance, $"{count} entries, some skipped"));
        }

        // ---- Quest page summaries (exact) and bounds
        kernels.PageSummaries(kv, stream);
        var min = new ushort[(long)B * kvh * layout.PageCapacity * 128];
        var max = new ushort[min.Length];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < kvh; h++) GpuReference.PageMinMax(layout, k, lengths[b], b, h, min, max);
        var gotMin = kv.PageMin.Download<ushort>(min.Length);
        var gotMax = kv.PageMax.Download<ushort>(max.Length);
        long mismatches = 0;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < kvh; h++)
                for (int p = 0; p < (lengths[b] + 15) / 16; p++)
                    for (int e = 0; e < 128; e++)
                    {
                        long o = layout.PageOffset(b, h, p) + e;
                        if (gotMin[o] != min[o] || gotMax[o] != max[o]) mismatches++;
                    }
        results.Add(new("page min/max summaries (exact)", mismatches, 0, $"{mismatches} mismatching channels"));
        foreach (var outHeads in new[] { IndexHeads.KvHead, IndexHeads.QueryHead })
        {
            int rows = outHeads == IndexHeads.KvHead ? kvh : qh, ps = LaunchPlan.ScoreStride(layout.PageCapacity);
            scoresD.Fill32(0xFFFFFFFF, (long)B * rows * ps, stream);
            kernels.PageBounds(kv, qd, outHeads, scoresD, ps, stream);
            var got = scoresD.Download<float>(B * rows * ps);
            var gotUsed = new List<float>();
            var reference = new List<double>();
            int violations = 0;
            for (int b = 0; b < B; b++)
                for (int r = 0; r < rows; r++)
                    for (int p = 0; p < (lengths[b] + 15) / 16; p++)
                    {
                        float g = got[(b * rows + r) * ps + p];
                        gotUsed.Add(g);
                        var heads = outHeads == IndexHeads.KvHead ? Enumerable.Range(r * layout.Group, layout.Group) : [r];
                        reference.Add(heads.Max(h => GpuReference.PageBound(layout, min, max, q, b, h, p)));
                        double trueMax = heads.Max(h => Enumerable.Range(p * 16, Math.Min(16, lengths[b] - p * 16))
                            .Max(pos => GpuReference.Score(layout, k, lengths[b], q, b, h, pos)));
                        if (g < trueMax - 1e-4 * Math.Max(1, Math.Abs(trueMax))) violations++;
                    }
            results.Add(new($"Quest page bounds ({(outHeads == IndexHeads.KvHead ? "max over group" : "per query head")})",
                GpuReference.RelativeError(gotUsed.ToArray(), reference.ToArray()), Tolerance, ""));
            results.Add(new($"Quest page bounds ≥ true page max ({(outHeads == IndexHeads.KvHead ? "group" : "query head")})", violations, 0, $"{violations} pages under their max"));
        }

        // ---- exact top-k, both algorithms: compared element for element with the reference on the same f32 scores
        foreach (var alg in new[] { TopKAlgorithm.MultiBlock, TopKAlgorithm.PerRow })
        {
            results.Add(TopKCase(kernels, stream, rng, alg, "top-2048 of 131072 random scores, 8 rows", rows: 8, n: 131072, k: 2048, values: null));
            results.Add(TopKCase(kernels, stream, rng, alg, "top-2048 of 40000, scores in 10 values (ties)", rows: 4, n: 40000, k: 2048, values: 10));
            results.Add(TopKCase(kernels, stream, rng, alg, "top-128 of 100 (k > n: all, padded)", rows: 3, n: 100, k: 128, values: null));
            results.Add(TopKCase(kernels, stream, rng, alg, "top-333 of 6144 candidates, −∞ entries, per-row lengths", rows: 8, n: 6144, k: 333, values: null, candidates: true, negInf: true, rowLengths: true));
            results.Add(TopKCase(kernels, stream, rng, alg, "top-128 pages of 8190 → 16 tokens each, limit", rows: 8, n: 8190, k: 128, values: null, expand: 16));
            results.Add(TopKCase(kernels, stream, rng, alg, "top-1 of 5000 with one shared maximum", rows: 2, n: 5000, k: 1, values: 3));
            results.Add(TopKCase(kernels, stream, rng, alg, "top-2048 of 16390 (two per-row tiles + tail)", rows: 3, n: 16390, k: 2048, values: 50));
        }
        return results;
    }

    private static int[] RandomLists(Random rng, int batch, int rows, int count, int[] lengths, bool withSkips)
    {
        var idx = new int[batch * rows * count];
        for (int b = 0; b < batch; b++)
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < count; j++)
                {
                    int p = rng.Next(Math.Max(1, lengths[b]));
                    if (withSkips && rng.Next(10) == 0) p = rng.Next(2) == 0 ? -1 : lengths[b] + rng.Next(5);
                    idx[(b * rows + r) * count + j] = p;
                }
        return idx;
    }

    private static Result TopKCase(DecodeKernels kernels, CudaStream stream, Random rng, TopKAlgorithm algorithm, string name, int rows, int n, int k,
        int? values, bool candidates = false, bool negInf = false, bool rowLengths = false, int expand = 1)
    {
        var dev = kernels.Device;
        int stride = LaunchPlan.ScoreStride(n);
        var scores = new float[rows * stride];
        var lens = new int[rows];
        var limits = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            lens[r] = rowLengths ? rng.Next(1, n + 1) : n;
            limits[r] = n * expand - rng.Next(expand * 3);
            for (int j = 0; j < n; j++)
            {
                float x = values is int m ? rng.Next(m) : (float)(rng.NextDouble() * 6 - 3);
                if (negInf && rng.Next(8) == 0) x = float.NegativeInfinity;
                scores[r * stride + j] = x;
            }
        }
        var cand = new int[rows * n];
        for (int r = 0; r < rows; r++)
        {
            int p = 0;
            for (int j = 0; j < n; j++) cand[r * n + j] = p += 1 + rng.Next(3);
        }
        using var s = dev.Upload<float>(scores);
        using var lensD = dev.Upload<int>(lens);
        using var limitsD = dev.Upload<int>(limits);
        using var candD = dev.Upload<int>(cand);
        int outStride = k * expand;
        using var outD = dev.Allocate((long)rows * outStride * 4);
        using var ws = new DecodeKernels.TopKWorkspace(dev, rows, n);
        outD.Fill32(0x7FFFFFFF, (long)rows * outStride, stream);
        var req = new DecodeKernels.TopKRequest(s, rows, stride, n, k, outD, outStride)
        {
            RowLengths = rowLengths ? lensD : null,
            Candidates = candidates ? candD : null,
            CandidateStride = n,
            Expand = expand,
            Limits = expand > 1 ? limitsD : null,
            Algorithm = algorithm,
        };
        kernels.TopK(req, ws, stream);
        var got = outD.Download<int>(rows * outStride);
        long wrong = 0;
        for (int r = 0; r < rows; r++)
        {
            var want = GpuReference.TopK(scores.AsSpan(r * stride, lens[r]), candidates ? cand.AsSpan(r * n, n) : default, k, expand,
                expand > 1 ? limits[r] : int.MaxValue);
            for (int i = 0; i < outStride; i++)
                if (got[r * outStride + i] != want[i]) wrong++;
        }
        return new Result($"top-k ({algorithm}): {name}", wrong, 0, $"{wrong} of {rows * outStride} positions differ");
    }
}
