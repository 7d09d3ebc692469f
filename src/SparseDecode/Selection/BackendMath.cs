namespace SparseDecode.Selection;

/// <summary>The portable arithmetic behind the candidate-building and dropped-mass backend operations: sorted
/// index-set algebra and softmax-mass sums. Backends call it; selectors go through the backend.</summary>
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

    /// <summary>Σ_{i∉S} softmax(s)_i from every position's score, in f64.</summary>
    public static double DroppedMass(ReadOnlySpan<float> all, ReadOnlySpan<int> selected)
    {
        if (all.IsEmpty) return 0;
        float max = float.NegativeInfinity;
        foreach (float s in all) if (s > max) max = s;
        double total = 0, dropped = 0;
        int j = 0;
        for (int i = 0; i < all.Length; i++)
        {
            double e = Math.Exp(all[i] - max);
            total += e;
            while (j < selected.Length && selected[j] < i) j++;
            if (j >= selected.Length || selected[j] != i) dropped += e;
        }
        return dropped / total;
    }

    /// <summary>Turns page score bounds into log upper bounds of each page's unselected exp-sum:
    /// bound + ln(unselected keys in the page), −∞ where every key is selected.</summary>
    public static void PageLogContributions(Span<float> bounds, ReadOnlySpan<int> selected, int n, int pageSize)
    {
        int j = 0;
        for (int p = 0; p < bounds.Length; p++)
        {
            int start = p * pageSize, end = Math.Min(n, start + pageSize), inPage = 0;
            while (j < selected.Length && selected[j] < start) j++;
            while (j < selected.Length && selected[j] < end) { inPage++; j++; }
            int unselected = end - start - inPage;
            bounds[p] = unselected > 0 ? bounds[p] + MathF.Log(unselected) : float.NegativeInfinity;
        }
    }

    public static int CountFinite(ReadOnlySpan<float> values)
    {
        int c = 0;
        foreach (float v in values) if (float.IsFinite(v)) c++;
        return c;
    }

    /// <summary>The page's positions not in the ascending `selected`, in order.</summary>
    public static int UnselectedInPage(int page, ReadOnlySpan<int> selected, int n, int pageSize, Span<int> result)
    {
        int start = page * pageSize, end = Math.Min(n, start + pageSize), count = 0;
        int j = selected.BinarySearch(start);
        if (j < 0) j = ~j;
        for (int x = start; x < end; x++)
        {
            if (j < selected.Length && selected[j] == x) { j++; continue; }
            result[count++] = x;
        }
        return count;
    }

    /// <summary>δ̄ = D̄ / (K + D̄) while pages are refined: K from the kept keys' exact scores, D̄ from the log page
    /// contributions not yet refined plus the refined keys' exact scores. All exponentials are taken relative to
    /// one reference m ≥ every score (a page's log contribution bounds its keys), so none overflows.</summary>
    public ref struct RefinedBound
    {
        private readonly Span<float> _logPages;
        private readonly double _max, _kept;
        private double _refined, _running;

        public RefinedBound(ReadOnlySpan<float> kept, Span<float> logPages)
        {
            _logPages = logPages;
            float max = float.NegativeInfinity;
            foreach (float s in kept) if (s > max) max = s;
            foreach (float s in logPages) if (s > max) max = s;
            _max = max;
            double k = 0, d = 0;
            if (!float.IsNegativeInfinity(max))
            {
                foreach (float s in kept) k += Math.Exp(s - max);
                foreach (float s in logPages) if (float.IsFinite(s)) d += Math.Exp(s - max);
            }
            _kept = k;
            _running = d;
            _refined = 0;
        }

        /// <summary>The current bound (from a running sum; <see cref="Final"/> recomputes it exactly).</summary>
        public readonly double Value => _kept + _running > 0 ? Math.Max(0, _running) / (_kept + Math.Max(0, _running)) : 0;

        /// <summary>Replaces a page's bound by the exact exp-sum of its unselected keys' scores.</summary>
        public void Refine(int page, ReadOnlySpan<float> scores)
        {
            double exact = 0;
            foreach (float s in scores) exact += Math.Exp(s - _max);
            _running += exact - Math.Exp(_logPages[page] - _max);
            _refined += exact;
            _logPages[page] = float.NegativeInfinity;
        }

        /// <summary>The bound summed afresh (no cancellation from the running updates).</summary>
        public readonly double Final()
        {
            if (double.IsNegativeInfinity(_max)) return 0;
            double d = _refined;
            foreach (float s in _logPages) if (float.IsFinite(s)) d += Math.Exp(s - _max);
            return _kept + d > 0 ? d / (_kept + d) : 0;
        }
    }

    /// <summary>Orders page indices by decreasing value (insertion sort: a few dozen pages).</summary>
    public static void SortByDescending(Span<int> pages, ReadOnlySpan<float> values)
    {
        for (int i = 1; i < pages.Length; i++)
        {
            int p = pages[i], j = i - 1;
            while (j >= 0 && values[pages[j]] < values[p])
            {
                pages[j + 1] = pages[j];
                j--;
            }
            pages[j + 1] = p;
        }
    }

    /// <summary>Fills `positions` with unselected positions: all of them in order when `exact`, else uniform
    /// draws with replacement (SplitMix64 seeded by `seed`, rejection of selected positions).</summary>
    public static void SampleUnselected(ReadOnlySpan<int> selected, int n, Span<int> positions, bool exact, ulong seed)
    {
        if (exact)
        {
            int c = 0, j = 0;
            for (int x = 0; x < n && c < positions.Length; x++)
            {
                if (j < selected.Length && selected[j] == x) { j++; continue; }
                positions[c++] = x;
            }
            return;
        }
        ulong state = seed;
        for (int i = 0; i < positions.Length; i++)
        {
            int p;
            do
            {
                state += 0x9E3779B97F4A7C15UL;
                ulong z = state;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                z ^= z >> 31;
                p = (int)((z >> 11) % (ulong)n);
            } while (selected.BinarySearch(p) >= 0);
            positions[i] = p;
        }
    }

    /// <summary>D̂ = unselected · mean(exp s over the draws); returns D̂ / (K + D̂).</summary>
    public static double EstimatedDroppedMass(ReadOnlySpan<float> kept, ReadOnlySpan<float> drawn, int unselected)
    {
        if (drawn.IsEmpty) return 0;
        float max = float.NegativeInfinity;
        foreach (float s in kept) if (s > max) max = s;
        foreach (float s in drawn) if (s > max) max = s;
        double k = 0, d = 0;
        foreach (float s in kept) k += Math.Exp(s - max);
        foreach (float s in drawn) d += Math.Exp(s - max);
        d *= (double)unselected / drawn.Length;
        return k + d > 0 ? d / (k + d) : 0;
    }
}
