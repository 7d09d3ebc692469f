namespace SparseDecode.Tokenization;

/// <summary>Applies BPE merges to one word, exactly as Hugging Face's Word::merge_all: the lowest-ranked
/// mergeable pair goes first (leftmost on ties), symbols form a linked list inside arrays, and a priority queue
/// holds candidate merges, so a 100K-symbol word costs O(n log n) rather than a rescan per merge.</summary>
internal static class BytePairEncoder
{
    [ThreadStatic] static int[]? t_prev;
    [ThreadStatic] static int[]? t_next;
    [ThreadStatic] static int[]? t_alive;
    [ThreadStatic] static MergeHeap? t_queue;

    public static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    public static long MergeValue(int rank, int newId) => ((long)rank << 32) | (uint)newId;

    /// <summary>Merges <paramref name="symbols"/> in place and returns how many symbols remain at its start.</summary>
    /// <param name="merges">pair key → (rank &lt;&lt; 32 | merged id)</param>
    public static int Merge(Span<int> symbols, Dictionary<long, long> merges)
    {
        int n = symbols.Length;
        if (n < 2 || merges.Count == 0) return n;
        int[] prev = Rent(ref t_prev, n), next = Rent(ref t_next, n), alive = Rent(ref t_alive, n);
        var queue = t_queue ??= new MergeHeap();
        queue.Clear();

        for (int i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
            alive[i] = 1;
        }
        for (int i = 0; i + 1 < n; i++)
            if (merges.TryGetValue(PairKey(symbols[i], symbols[i + 1]), out long m))
                queue.Enqueue((int)m, Priority(m, i));

        // The priority packs (rank, position): a lower rank wins, then the leftmost position.
        while (queue.TryDequeue(out int newId, out long priority))
        {
            int pos = (int)(priority & 0xFFFFFFFF);
            if (alive[pos] == 0) continue;
            int right = next[pos];
            if (right < 0) continue;
            // A stale entry: the pair at pos changed since it was queued. Like Hugging Face, only the result
            // id is compared, so a different pair that merges into the same token is still merged.
            if (!merges.TryGetValue(PairKey(symbols[pos], symbols[right]), out long current) || (int)current != newId) continue;

            symbols[pos] = newId;
            int after = next[right];
            next[pos] = after;
            alive[right] = 0;
            if (after >= 0) prev[after] = pos;

            int before = prev[pos];
            if (before >= 0 && merges.TryGetValue(PairKey(symbols[before], newId), out long left))
                queue.Enqueue((int)left, Priority(left, before));
            if (after >= 0 && merges.TryGetValue(PairKey(newId, symbols[after]), out long rightMerge))
                queue.Enqueue((int)rightMerge, Priority(rightMerge, pos));
        }

        int count = 0;
        for (int i = 0; i < n; i++)
            if (alive[i] != 0) symbols[count++] = symbols[i];
        return count;
    }

    static long Priority(long merge, int pos) => (merge & unchecked((long)0xFFFFFFFF00000000)) | (uint)pos;

    static int[] Rent(ref int[]? buffer, int n)
    {
        if (buffer is null || buffer.Length < n) buffer = new int[Math.Max(n, 64)];
        return buffer;
    }

    /// <summary>A binary min-heap of (priority, merged id), cheaper than PriorityQueue for this one key type.</summary>
    sealed class MergeHeap
    {
        long[] _keys = new long[64];
        int[] _values = new int[64];
        int _count;

        public void Clear() => _count = 0;

        public void Enqueue(int value, long key)
        {
            if (_count == _keys.Length)
            {
                Array.Resize(ref _keys, _count * 2);
                Array.Resize(ref _values, _count * 2);
            }
            int i = _count++;
            while (i > 0)
            {
                int parent = (i - 1) >> 1;
                if (_keys[parent] <= key) break;
                _keys[i] = _keys[parent];
                _values[i] = _values[parent];
                i = parent;
            }
            _keys[i] = key;
            _values[i] = value;
        }

        public bool TryDequeue(out int value, out long key)
        {
            if (_count == 0)
            {
                value = 0;
                key = 0;
                return false;
            }
            value = _values[0];
            key = _keys[0];
            long lastKey = _keys[--_count];
            int lastValue = _values[_count];
            int i = 0;
            while (true)
            {
                int child = 2 * i + 1;
                if (child >= _count) break;
                if (child + 1 < _count && _keys[child + 1] < _keys[child]) child++;
                if (_keys[child] >= lastKey) break;
                _keys[i] = _keys[child];
                _values[i] = _values[child];
                i = child;
            }
            _keys[i] = lastKey;
            _values[i] = lastValue;
            return true;
        }
    }
}
