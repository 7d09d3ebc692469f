using System.Numerics;
using System.Runtime.Intrinsics;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Exact top-k by selection (average O(n)): find the k-th largest score with quickselect (on a copy, or
/// for small k on the few values that reach a threshold guessed from a sample), then collect the positions at or
/// above it in one pass. Results come back ascending by position so that
/// attention reads the cache in order.</summary>
public static class TopK
{
    /// <summary>candidates empty: scores[j] belongs to position j. scratch needs scores.Length floats.</summary>
    public static int Select(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates, int k, Span<int> result, Span<float> scratch)
    {
        int n = scores.Length;
        if (k <= 0 || n == 0) return 0;
        if (k >= n)
        {
            for (int i = 0; i < n; i++) result[i] = candidates.IsEmpty ? i : candidates[i];
            if (!candidates.IsEmpty) result[..n].Sort();
            return n;
        }
        float threshold = KthLargestOf(scores, k, scratch[..n]);
        int count = CountAbove(scores, threshold), ties = 0;
        int tiesAllowed = k - count;
        count = 0;
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            // a few percent of the values reach the threshold: test 8 at a time, look only at those that do
            var t = Vector256.Create(threshold);
            for (; j + 8 <= n && count < k; j += 8)
            {
                uint reach = Vector256.GreaterThanOrEqual(Vector256.Create(scores.Slice(j, 8)), t).ExtractMostSignificantBits();
                for (; reach != 0 && count < k; reach &= reach - 1)
                {
                    int at = j + BitOperations.TrailingZeroCount(reach);
                    if (scores[at] > threshold || ties++ < tiesAllowed) result[count++] = candidates.IsEmpty ? at : candidates[at];
                }
            }
        }
        for (; j < n && count < k; j++)
        {
            float s = scores[j];
            if (s > threshold || (s == threshold && ties++ < tiesAllowed))
                result[count++] = candidates.IsEmpty ? j : candidates[j];
        }
        if (!candidates.IsEmpty) result[..count].Sort();
        return count;
    }

    private static int CountAbove(ReadOnlySpan<float> a, float threshold)
    {
        int count = 0, j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var t = Vector256.Create(threshold);
            for (; j + 8 <= a.Length; j += 8)
                count += BitOperations.PopCount(Vector256.GreaterThan(Vector256.Create(a.Slice(j, 8)), t).ExtractMostSignificantBits());
        }
        for (; j < a.Length; j++) if (a[j] > threshold) count++;
        return count;
    }

    /// <summary>Every SampleStride-th value is sampled to guess a threshold for small k.</summary>
    private const int SampleStride = 8;

    /// <summary>The k-th largest of `a`, NaN counting as −∞ (scratch: a.Length floats). For k a small share of n,
    /// the sample of every 8th value gives a threshold t that about 2k values reach; when at least k do, the k-th
    /// largest is among them and quickselect runs on those few instead of on all (the answer is the same either
    /// way; when fewer reach t, all values are searched).</summary>
    public static float KthLargestOf(ReadOnlySpan<float> a, int k, Span<float> scratch)
    {
        int n = a.Length, samples = n / SampleStride, rank = 2 * k / SampleStride + 8;
        if (rank < samples / 2)
        {
            var sample = scratch[..samples];
            for (int i = 0; i < samples; i++)
            {
                float x = a[i * SampleStride];
                sample[i] = float.IsNaN(x) ? float.NegativeInfinity : x;
            }
            float guess = KthLargest(sample, rank);
            // the values that reach the guess (NaN never does), gathered after the sample's room
            var reached = scratch[samples..];
            int m = 0, j = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var t = Vector256.Create(guess);
                for (; j + 8 <= n && m + 8 <= reached.Length; j += 8)
                    for (uint r = Vector256.GreaterThanOrEqual(Vector256.Create(a.Slice(j, 8)), t).ExtractMostSignificantBits(); r != 0; r &= r - 1)
                        reached[m++] = a[j + BitOperations.TrailingZeroCount(r)];
            }
            for (; j < n && m < reached.Length; j++) if (a[j] >= guess) reached[m++] = a[j];
            if (j == n && m >= k) return KthLargest(reached[..m], k);
        }
        var work = scratch[..n];
        a.CopyTo(work);
        for (int i = 0; i < n; i++) if (float.IsNaN(work[i])) work[i] = float.NegativeInfinity;
        return KthLargest(work, k);
    }

    /// <summary>The k-th largest value (1-based); reorders `a`.</summary>
    public static float KthLargest(Span<float> a, int k)
    {
        int target = k - 1, lo = 0, hi = a.Length - 1;
        while (true)
        {
            if (lo == hi) return a[lo];
            int mid = lo + (hi - lo) / 2;
            // median of three as pivot, descending order
            float x = a[lo], y = a[mid], z = a[hi];
            float pivot = Math.Max(Math.Min(x, y), Math.Min(Math.Max(x, y), z));
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] > pivot) i++;
                while (a[j] < pivot) j--;
                if (i <= j)
                {
                    (a[i], a[j]) = (a[j], a[i]);
                    i++;
                    j--;
                }
            }
            if (target <= j) hi = j;
            else if (target >= i) lo = i;
            else return a[target];
        }
    }
}
