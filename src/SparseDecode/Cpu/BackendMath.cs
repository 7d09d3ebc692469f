using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The portable arithmetic behind the candidate-building backend operations (sorted index-set algebra)
/// and Quest's widened page bound. Backends call it; plans go through the backend.</summary>
internal static class BackendMath
{
    /// <summary>Quest's page bound from its two f32 sums over the head's channels (sum = Σ max(q·min, q·max),
    /// magnitude = Σ max(|q·min|, |q·max|)), widened so that it bounds the f32 scores the backend computes:
    /// (sum + 4γ·magnitude)·scale, then + |v|·γ, rounded up to f32, with γ = (d + 2)·2⁻²³. Rounding up is monotonic,
    /// so the maximum over heads of their bounds is the bound of the maximum. selection.cu's sel_page_bounds widens
    /// the same way.</summary>
    public static float WidenedPageBound(float sum, float magnitude, float scale, int headDim)
    {
        double gamma = (headDim + 2) * Math.Pow(2, -23);
        double v = (sum + 4 * gamma * magnitude) * scale;
        double bound = v + Math.Abs(v) * gamma;
        float f = (float)bound;
        return f < bound ? MathF.BitIncrement(f) : f;
    }

    /// <summary>Union of [p + shift − radius, p + shift + radius] over ascending p, clipped to [0, limit).</summary>
    public static int Expand(ReadOnlySpan<int> sorted, int shift, int radius, int limit, Span<int> result)
    {
        int count = 0, next = 0;
        foreach (int p in sorted)
        {
            int lo = Math.Max(Math.Max(p + shift - radius, next), 0);
            int hi = Math.Min(p + shift + radius, limit - 1);
            for (int x = lo; x <= hi; x++) result[count++] = x;
            if (hi + 1 > next) next = hi + 1;
        }
        return count;
    }

    /// <summary>Sorted, duplicate-free union of two ascending lists.</summary>
    public static int Union(ReadOnlySpan<int> a, ReadOnlySpan<int> b, Span<int> result)
    {
        int i = 0, j = 0, count = 0;
        while (i < a.Length || j < b.Length)
        {
            int v = j >= b.Length || (i < a.Length && a[i] <= b[j]) ? a[i++] : b[j++];
            if (count == 0 || result[count - 1] != v) result[count++] = v;
        }
        return count;
    }

    /// <summary>Sorted union of an ascending list with [start, end).</summary>
    public static int UnionRange(ReadOnlySpan<int> a, int start, int end, Span<int> result)
    {
        int i = 0, count = 0;
        for (; i < a.Length && a[i] < start; i++)
            if (count == 0 || result[count - 1] != a[i]) result[count++] = a[i];
        for (int x = start; x < end; x++) result[count++] = x;
        while (i < a.Length && a[i] < end) i++;
        for (; i < a.Length; i++)
            if (count == 0 || result[count - 1] != a[i]) result[count++] = a[i];
        return count;
    }
}
