using SparseDecode.Cuda;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>Float64 CPU references of the CUDA decode kernels, over the same bf16 inputs and the same layouts
/// (K/V [batch][kvHeads][capacity][128] as raw bf16 bits, queries [batch][qHeads][128] f32). They define what the
/// kernels compute, including the edge rules: index entries &lt; 0 or ≥ the length are skipped; top-k takes the
/// lowest positions among equal scores, writes positions ascending, −1 for −∞ scores and as padding.</summary>
internal static class GpuReference
{
    public const int HeadDim = 128;

    public static double Bf16(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    public static ushort ToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        u += 0x7fffu + ((u >> 16) & 1u);
        return (ushort)(u >> 16);
    }

    /// <summary>Layout of one layer's cache for a batch, as on the device.</summary>
    public readonly record struct Layout(int Batch, int KvHeads, int QueryHeads, int Capacity, int PageSize)
    {
        public int Group => QueryHeads / KvHeads;
        public int PageCapacity => (Capacity + PageSize - 1) / PageSize;
        public long Offset(int b, int h, int pos) => (((long)b * KvHeads + h) * Capacity + pos) * HeadDim;
        public long PageOffset(int b, int h, int page) => (((long)b * KvHeads + h) * PageCapacity + page) * HeadDim;
    }

    private static double Dot(ReadOnlySpan<float> q, ReadOnlySpan<ushort> k)
    {
        double s = 0;
        for (int e = 0; e < HeadDim; e++) s += (double)q[e] * Bf16(k[e]);
        return s;
    }

    /// <summary>Attention of query head h of sequence b over `positions` (null: all of [0, length)); entries
    /// outside [0, length) skipped. Writes 128 outputs, returns the log-sum-exp (−∞ when nothing is attended).</summary>
    public static double Attention(Layout l, ushort[] k, ushort[] v, int length, float[] q, int b, int h,
        ReadOnlySpan<int> positions, bool all, Span<double> output)
    {
        int kvh = h / l.Group;
        var qh = q.AsSpan((b * l.QueryHeads + h) * HeadDim, HeadDim);
        double scale = 1 / Math.Sqrt(HeadDim);
        int n = all ? length : positions.Length;
        var s = new double[n];
        double max = double.NegativeInfinity;
        for (int j = 0; j < n; j++)
        {
            int p = all ? j : positions[j];
            s[j] = p < 0 || p >= length ? double.NegativeInfinity : Dot(qh, k.AsSpan((int)l.Offset(b, kvh, p), HeadDim)) * scale;
            max = Math.Max(max, s[j]);
        }
        output.Clear();
        if (double.IsNegativeInfinity(max)) return double.NegativeInfinity;
        double sum = 0;
        for (int j = 0; j < n; j++)
        {
            if (double.IsNegativeInfinity(s[j])) continue;
            int p = all ? j : positions[j];
            double w = Math.Exp(s[j] - max);
            sum += w;
            var vr = v.AsSpan((int)l.Offset(b, kvh, p), HeadDim);
            for (int e = 0; e < HeadDim; e++) output[e] += w * Bf16(vr[e]);
        }
        for (int e = 0; e < HeadDim; e++) output[e] /= sum;
        return max + Math.Log(sum);
    }

    /// <summary>Score of query head h against the key at position p (−∞ outside [0, length)).</summary>
    public static double Score(Layout l, ushort[] k, int length, float[] q, int b, int h, int p) =>
        p < 0 || p >= length ? double.NegativeInfinity
            : Dot(q.AsSpan((b * l.QueryHeads + h) * HeadDim, HeadDim), k.AsSpan((int)l.Offset(b, h / l.Group, p), HeadDim)) / Math.Sqrt(HeadDim);

    /// <summary>Per-page per-channel min and max of the keys of sequence b, KV head h.</summary>
    public static void PageMinMax(Layout l, ushort[] k, int length, int b, int h, ushort[] min, ushort[] max)
    {
        int pages = (length + l.PageSize - 1) / l.PageSize;
        for (int p = 0; p < pages; p++)
            for (int e = 0; e < HeadDim; e++)
            {
                ushort lo = 0, hi = 0;
                double flo = double.PositiveInfinity, fhi = double.NegativeInfinity;
                for (int r = p * l.PageSize; r < Math.Min(length, (p + 1) * l.PageSize); r++)
                {
                    ushort x = k[l.Offset(b, h, r) + e];
                    double f = Bf16(x);
                    if (f < flo) { flo = f; lo = x; }
                    if (f > fhi) { fhi = f; hi = x; }
                }
                min[l.PageOffset(b, h, p) + e] = lo;
                max[l.PageOffset(b, h, p) + e] = hi;
            }
    }

    /// <summary>Quest's bound Σ_e max(q_e·min_e, q_e·max_e)/√d of query head h on page p.</summary>
    public static double PageBound(Layout l, ushort[] min, ushort[] max, float[] q, int b, int h, int page)
    {
        var qh = q.AsSpan((b * l.QueryHeads + h) * HeadDim, HeadDim);
        long o = l.PageOffset(b, h / l.Group, page);
        double s = 0;
        for (int e = 0; e < HeadDim; e++) s += Math.Max(qh[e] * Bf16(min[o + e]), qh[e] * Bf16(max[o + e]));
        return s / Math.Sqrt(HeadDim);
    }

    /// <summary>Exact top-k of one row: positions (candidates[j], or j) of the k largest scores, ties to the
    /// lowest entry, ascending, −1 for −∞ entries, each expanded to p·expand + r (−1 at or past limit), padded
    /// with −1 to k·expand entries.</summary>
    public static int[] TopK(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, int expand = 1, int limit = int.MaxValue)
    {
        var order = new int[scores.Length];
        for (int j = 0; j < order.Length; j++) order[j] = j;
        var keys = scores.ToArray();
        // descending by score, ascending by entry among equal scores (a stable sort of the negated order)
        Array.Sort(order, (a, b) =>
        {
            int c = OrderKey(keys[b]).CompareTo(OrderKey(keys[a]));
            return c != 0 ? c : a.CompareTo(b);
        });
        int take = Math.Min(k, order.Length);
        var chosen = order.AsSpan(0, take).ToArray();
        Array.Sort(chosen);
        var result = new int[k * expand];
        Array.Fill(result, -1);
        for (int s = 0; s < take; s++)
        {
            int j = chosen[s];
            int pos = float.IsNegativeInfinity(keys[j]) ? -1 : candidates.IsEmpty ? j : candidates[j];
            for (int r = 0; r < expand; r++)
            {
                long p = (long)pos * expand + r;
                result[s * expand + r] = pos < 0 || p >= limit ? -1 : (int)p;
            }
        }
        return result;
    }

    /// <summary>The kernels' order-preserving key of a float (larger float, larger key; −0 below +0).</summary>
    public static uint OrderKey(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
    }

    /// <summary>‖a − b‖ / ‖b‖ over finite reference entries; NaN (and an unwritten, NaN-poisoned output) fails;
    /// a −∞ reference must be matched by −∞.</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> reference)
    {
        if (actual.Length != reference.Length) throw new ArgumentException("Lengths differ.");
        double num = 0, den = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            if (float.IsNaN(actual[i])) return double.PositiveInfinity;
            if (double.IsNegativeInfinity(reference[i]))
            {
                if (!float.IsNegativeInfinity(actual[i])) return double.PositiveInfinity;
                continue;
            }
            if (!float.IsFinite(actual[i])) return double.PositiveInfinity;
            double d = actual[i] - reference[i];
            num += d * d;
            den += reference[i] * reference[i];
        }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }
}
