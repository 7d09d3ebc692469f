namespace SparseDecode.Kernels;

/// <summary>Exact top-k by selection (average O(n)): find the k-th largest score with quickselect on a copy,
/// then collect the positions at or above it in one pass. Results come back ascending by position so that
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
            for (int j = 0; j < n; j++) result[j] = candidates.IsEmpty ? j : candidates[j];
            if (!candidates.IsEmpty) result[..n].Sort();
            return n;
        }
        var work = scratch[..n];
        scores.CopyTo(work);
        for (int j = 0; j < n; j++) if (float.IsNaN(work[j])) work[j] = float.NegativeInfinity;
        float threshold = KthLargest(work, k);
        int count = 0, ties = 0;
        for (int j = 0; j < n; j++) if (scores[j] > threshold) count++;
        int tiesAllowed = k - count;
        count = 0;
        for (int j = 0; j < n && count < k; j++)
        {
            float s = scores[j];
            if (s > threshold || (s == threshold && ties++ < tiesAllowed))
                result[count++] = candidates.IsEmpty ? j : candidates[j];
        }
        if (!candidates.IsEmpty) result[..count].Sort();
        return count;
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
