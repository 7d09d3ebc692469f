using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Engine;

namespace SparseDecode.Cpu;

/// <summary>The CPU backend of <see cref="IInferenceEngine"/>: the <see cref="Transformer"/> with a KV cache of
/// `cacheType` per sequence. A batch of sequences decodes as the rows of one step
/// (<see cref="Transformer.Decode(DecodeBatch, IAttentionObserver?)"/>): the weights are read once per step for all
/// of them, each sequence keeps its own cache, workspace and plan state. With `kvCacheBytes` the sequences' caches
/// together hold at most that many bytes: each sequence counts what its capacity can allocate
/// (<see cref="KvCache.BytesFor"/>) from its making to its disposal, <see cref="HasRoomFor"/> says whether one more
/// fits, and <see cref="CreateSequence"/> and forks beyond it throw <see cref="KvCacheFullException"/>, so a server
/// makes requests wait instead of running the machine out of memory.</summary>
public sealed class CpuEngine(Transformer model, DType cacheType = DType.F32, bool ownsModel = false, long? kvCacheBytes = null) : IInferenceEngine
{
    // the batch of the last DecodeBatch, kept for the next; a call made while another runs makes its own
    private DecodeBatch? _batch = new();

    // refused at load, not at the first sequence
    private readonly DType _cacheType = KvCache.Checked(cacheType, model.Config.HeadDim);

    public Transformer Model => model;
    public DType CacheType => _cacheType;
    public ModelConfig Config => model.Config;
    public string DeviceName => "cpu";
    public int MaxContext => model.Config.MaxPositions;
    public bool ConcurrentSequences => true;
    public bool SupportsObserver => true;

    private readonly long? _kvLimit = kvCacheBytes is null || kvCacheBytes >= KvCache.BytesFor(model.Config, cacheType, 1) ? kvCacheBytes
        : throw new ArgumentOutOfRangeException(nameof(kvCacheBytes), string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"A bound of {kvCacheBytes / 1e6:F3} MB on the KV cache holds no sequence: the smallest, one segment of this model's cache, takes {KvCache.BytesFor(model.Config, cacheType, 1) / 1e6:F1} MB."));
    private long _kvHeld;

    /// <summary>The bound on the sequences' caches and what is free of it now; (0, 0) without a bound.</summary>
    public (long Total, long Free) KvPool => _kvLimit is long limit ? (limit, limit - Volatile.Read(ref _kvHeld)) : (0, 0);

    public bool HasRoomFor(int capacity, SelectionPlan? plan = null) =>
        _kvLimit is not long limit || Volatile.Read(ref _kvHeld) + KvCache.BytesFor(Config, _cacheType, Math.Min(capacity, MaxContext)) <= limit;

    /// <summary>Counts a cache of `capacity` positions against the bound (its bytes, to give back at disposal), or
    /// throws <see cref="KvCacheFullException"/> where it would not fit.</summary>
    internal long Hold(int capacity)
    {
        if (_kvLimit is not long limit) return 0;
        long bytes = KvCache.BytesFor(Config, _cacheType, capacity), held;
        do
        {
            held = Volatile.Read(ref _kvHeld);
            if (held + bytes > limit)
                throw new KvCacheFullException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"A sequence of {capacity} positions needs {bytes / 1e6:F1} MB of KV cache; {(limit - held) / 1e6:F1} MB of the {limit / 1e6:F1} MB bound are free."));
        }
        while (Interlocked.CompareExchange(ref _kvHeld, held + bytes, held) != held);
        return bytes;
    }

    internal void Release(long bytes) => Interlocked.Add(ref _kvHeld, -bytes);

    public static CpuEngine Load(string directory, DType cacheType = DType.F32, long? kvCacheBytes = null)
    {
        var model = Transformer.Load(directory);
        try
        {
            return new(model, cacheType, ownsModel: true, kvCacheBytes);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null)
    {
        CheckCapacity(capacity, plan);
        return CpuSequence.Holding(this, capacity, held => new CpuSequence(this, model.CreateCache(capacity, _cacheType), plan, held));
    }

    internal void CheckCapacity(int capacity, SelectionPlan? plan)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        if (capacity > MaxContext)
            throw new ContextOverflowException($"The sequence needs {capacity} positions but the model's context is {MaxContext} tokens.");
        plan?.CheckFits(Config, capacity);
    }

    public void DecodeBatch(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length != sequences.Count) throw new ArgumentException($"{sequences.Count} sequences but {tokens.Length} tokens.");
        var batch = Interlocked.Exchange(ref _batch, null) ?? new DecodeBatch(sequences.Count);
        try
        {
            for (int i = 0; i < sequences.Count; i++)
            {
                if (sequences[i] is not CpuSequence s || s.Engine != this)
                    throw new ArgumentException($"Sequence {i} of the batch was not made by this engine.", nameof(sequences));
                s.AddTo(batch, tokens[i]);
            }
            model.Decode(batch);
        }
        finally
        {
            batch.Clear();
            Volatile.Write(ref _batch, batch);
        }
    }

    public void Dispose()
    {
        if (ownsModel) model.Dispose();
    }
}

/// <summary>One sequence on the CPU: its cache, decode workspace and its plan's state. Its dense multi-token pass
/// (<see cref="DecodeDense"/>) runs the tokens as rows of one batched decode step at consecutive positions, so each
/// row's arithmetic is the decode step's.</summary>
public sealed class CpuSequence : IDecodeSequence, ISpeculativeSequence
{
    private readonly CpuEngine _engine;
    private readonly KvCache _cache;
    private readonly SpanPlanOps? _plan;
    private readonly DecodeWorkspace _ws;
    // the dense pass's rows: their batch and the workspaces of all rows but the last (which is _ws), made at first use
    private DecodeBatch? _rows;
    private readonly List<DecodeWorkspace> _rowSpaces = [];

    // bytes counted against the engine's bound on the KV cache, given back once at disposal
    private long _held;

    internal CpuSequence(CpuEngine engine, KvCache cache, SelectionPlan? plan, long held)
    {
        _engine = engine;
        _held = held;
        _cache = cache;
        _plan = plan is null ? null : new SpanPlanOps(plan);
        _ws = new DecodeWorkspace(engine.Model, cache, plan?.Granularity ?? SelectionGranularity.QueryHead);
    }

    public int Length => _cache.Length;
    public int Capacity => _cache.Capacity;
    public long CacheBytes => _cache.AllocatedBytes;
    public ReadOnlySpan<float> Logits => _ws.Logits;

    public void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null)
    {
        var model = _engine.Model;
        if (everyLogits is null)
        {
            ChunkedPrefill.Run(model, tokens, _cache, _ws.Logits, progress);
            return;
        }
        int v = model.Config.VocabSize, chunk = model.PrefillChunk;
        var logits = new float[Math.Min(chunk, tokens.Length) * v];
        for (int c0 = 0; c0 < tokens.Length; c0 += chunk)
        {
            int n = Math.Min(chunk, tokens.Length - c0);
            model.Prefill(tokens.Slice(c0, n), _cache, c0 + n == tokens.Length ? _ws.Logits : default, logits.AsSpan(0, n * v));
            for (int t = 0; t < n; t++) everyLogits(c0 + t, logits.AsSpan(t * v, v));
            progress?.Invoke(c0 + n, tokens.Length);
        }
    }

    internal CpuEngine Engine => _engine;

    /// <summary>`make` given the bytes of `capacity` positions held against the engine's bound; given back if it throws.</summary>
    internal static CpuSequence Holding(CpuEngine engine, int capacity, Func<long, CpuSequence> make)
    {
        long held = engine.Hold(capacity);
        try
        {
            return make(held);
        }
        catch
        {
            engine.Release(held);
            throw;
        }
    }

    public void Decode(int token, IAttentionObserver? observer = null)
    {
        CheckRoom();
        _engine.Model.Decode(token, _cache, _ws, _plan, observer);
    }

    /// <summary>Adds this sequence's next step, `token`, as a row of a batched step.</summary>
    internal void AddTo(DecodeBatch batch, int token)
    {
        CheckRoom();
        batch.Add(token, _cache, _ws, _plan);
    }

    private void CheckRoom()
    {
        if (_cache.Length >= _cache.Capacity)
            throw new ContextOverflowException($"The sequence needs {_cache.Length + 1} positions but its cache holds {_cache.Capacity}.");
    }

    public void DecodeDense(ReadOnlySpan<int> tokens, Span<float> logits)
    {
        int n = tokens.Length, vocab = _engine.Config.VocabSize;
        if (n == 0) return;
        if (logits.Length < n * vocab) throw new ArgumentException($"{n} tokens need {n * vocab} logits, the span holds {logits.Length}.", nameof(logits));
        if (_cache.Length + n > _cache.Capacity)
            throw new ContextOverflowException($"The sequence needs {_cache.Length + n} positions but its cache holds {_cache.Capacity}.");
        while (_rowSpaces.Count < n - 1) _rowSpaces.Add(new DecodeWorkspace(_engine.Model, _cache, denseOnly: true));
        var batch = _rows ??= new DecodeBatch(n);
        try
        {
            batch.Add(tokens[0], _cache, n == 1 ? _ws : _rowSpaces[0], null);
            for (int i = 1; i < n; i++) batch.AddNext(tokens[i], i == n - 1 ? _ws : _rowSpaces[i]);
            _engine.Model.Decode(batch);
        }
        finally
        {
            batch.Clear();
        }
        for (int i = 0; i < n; i++) (i == n - 1 ? _ws : _rowSpaces[i]).Logits.CopyTo(logits.Slice(i * vocab, vocab));
    }

    public void SavePlanState(int slot) => _plan?.Save(slot);

    public void RestorePlanState(int slot) => _plan?.Restore(slot);

    /// <summary>The plan's executor (null: dense), for checks of its state.</summary>
    internal SpanPlanOps? PlanOps => _plan;

    public IDecodeSequence Fork(int capacity, SelectionPlan? plan = null)
    {
        _engine.CheckCapacity(capacity, plan);
        var copy = Holding(_engine, capacity, held => new CpuSequence(_engine, _cache.Clone(capacity), plan, held));
        _ws.Logits.CopyTo(copy._ws.Logits, 0);
        return copy;
    }

    /// <summary>A copy of the first `length` positions that holds `capacity` (counted against the engine's bound as
    /// that, not as this sequence's capacity): only the segments holding them are copied.</summary>
    public IDecodeSequence ForkPrefix(int length, int capacity, SelectionPlan? plan = null)
    {
        if ((uint)length > (uint)Length) throw new ArgumentOutOfRangeException(nameof(length), $"The sequence has only {Length} positions.");
        _engine.CheckCapacity(capacity, plan);
        var copy = Holding(_engine, capacity, held => new CpuSequence(_engine, _cache.ClonePrefix(length, capacity), plan, held));
        if (length == Length) _ws.Logits.CopyTo(copy._ws.Logits, 0);
        return copy;
    }

    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length > _cache.Length) throw new ArgumentOutOfRangeException(nameof(length), $"The sequence has only {_cache.Length} positions.");
        _cache.Truncate(length);
    }

    public void Dispose()
    {
        _cache.Dispose();
        _engine.Release(Interlocked.Exchange(ref _held, 0));
    }
}
