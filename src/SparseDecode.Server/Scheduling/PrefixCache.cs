using SparseDecode.Engine;

namespace SparseDecode.Server.Scheduling;

/// <summary>The KV caches of finished requests' prompts and decoded tokens, kept so that a request whose prompt begins
/// the same way (a shared system prompt, another question about the same document, the next turn of a conversation
/// that repeats the reply) starts from a copy of the longest cached prefix and prefills only the rest
/// (<see cref="IDecodeSequence.ForkPrefix"/>). A prompt's keys and values are those the prefill would write, so the
/// output is the same as without the cache; a reply's are the decode step's, equal to a prefill's within rounding. Entries
/// are kept most recently used first; past the capacity or the bytes allowed, or when the engine needs their memory
/// for a request, the least recently used goes. Scheduler thread only.</summary>
internal sealed class PrefixCache(int capacity, int minTokens, long maxBytes = long.MaxValue) : IDisposable
{
    private sealed record Entry(int[] Tokens, IDecodeSequence Sequence, long Bytes);

    private readonly LinkedList<Entry> _entries = new();
    private long _bytes;

    public int Count => _entries.Count;

    /// <summary>Cache bytes the kept sequences hold (<see cref="IDecodeSequence.CacheBytes"/>), at most maxBytes.</summary>
    public long Bytes => _bytes;

    /// <summary>The cached sequence sharing the longest prefix with `prompt`, at least minTokens long, and that length
    /// (which may be the whole prompt); null when none. The entry becomes the most recently used.</summary>
    public (IDecodeSequence Source, int Shared)? Find(ReadOnlySpan<int> prompt)
    {
        LinkedListNode<Entry>? best = null;
        int longest = minTokens - 1;
        for (var node = _entries.First; node is not null; node = node.Next)
        {
            int shared = prompt.CommonPrefixLength(node.Value.Tokens);
            if (shared > longest) (best, longest) = (node, shared);
        }
        if (best is null) return null;
        _entries.Remove(best);
        _entries.AddFirst(best);
        return (best.Value.Sequence, longest);
    }

    /// <summary>Keeps `sequence`, which holds the keys and values of `tokens` (a finished request's prompt and the tokens
    /// it decoded; maybe more), truncated to them; true when the cache took it (the caller no longer disposes it).
    /// Tokens that a kept entry already covers are not kept; entries that these cover go.</summary>
    public bool Keep(int[] tokens, IDecodeSequence sequence)
    {
        if (capacity == 0 || tokens.Length < minTokens || sequence.Length < tokens.Length || sequence.CacheBytes > maxBytes) return false;
        for (var node = _entries.First; node is not null;)
        {
            var next = node.Next;
            int shared = tokens.AsSpan().CommonPrefixLength(node.Value.Tokens);
            if (shared == tokens.Length) return false;
            if (shared == node.Value.Tokens.Length) Drop(node);
            node = next;
        }
        sequence.Truncate(tokens.Length);
        _entries.AddFirst(new Entry(tokens, sequence, sequence.CacheBytes));
        _bytes += sequence.CacheBytes;
        while (_entries.Count > capacity || _bytes > maxBytes) Drop(_entries.Last!);
        return true;
    }

    /// <summary>Frees the least recently used entry; false when there is none.</summary>
    public bool EvictOne()
    {
        if (_entries.Last is not { } last) return false;
        Drop(last);
        return true;
    }

    private void Drop(LinkedListNode<Entry> node)
    {
        _entries.Remove(node);
        _bytes -= node.Value.Bytes;
        node.Value.Sequence.Dispose();
    }

    public void Dispose()
    {
        while (EvictOne()) { }
    }
}
