namespace SparseDecode.Cuda.Interop;

/// <summary>Which of a pool's `pages` physical pages are free, and how many mappings hold each of the others. Pages are
/// taken all or nothing, so a request that cannot be met leaves the pool as it was. Not thread-safe: the engine that
/// owns it drives it from one thread.</summary>
internal sealed class PageLedger
{
    private readonly int[] _free;
    private readonly int[] _holders;
    private int _freeCount;

    public PageLedger(int pages)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(pages, 0);
        _free = new int[pages];
        _holders = new int[pages];
        // handed out lowest first, so that a lightly used pool touches few of its chunks
        for (int i = 0; i < pages; i++) _free[i] = pages - 1 - i;
        _freeCount = pages;
    }

    public int Pages => _free.Length;
    public int Free => _freeCount;
    public int Used => Pages - _freeCount;

    /// <summary>Takes pages.Length free pages into `pages`, each held once; false, taking none, when too few are free.</summary>
    public bool TryTake(Span<int> pages)
    {
        if (pages.Length > _freeCount) return false;
        foreach (ref int p in pages)
        {
            p = _free[--_freeCount];
            _holders[p] = 1;
        }
        return true;
    }

    /// <summary>One more mapping holds `page` (an alias of a page already held).</summary>
    public void Share(int page)
    {
        if (Holders(page) == 0) throw new InvalidOperationException($"Page {page} is free; only a held page can be shared.");
        _holders[page]++;
    }

    /// <summary>One mapping of `page` is gone; true when it was the last and the page is free again.</summary>
    public bool Put(int page)
    {
        if (Holders(page) == 0) throw new InvalidOperationException($"Page {page} is already free.");
        if (--_holders[page] > 0) return false;
        _free[_freeCount++] = page;
        return true;
    }

    public int Holders(int page) =>
        (uint)page < (uint)_holders.Length ? _holders[page] : throw new ArgumentOutOfRangeException(nameof(page), $"Page {page} of a pool of {Pages}.");
}
