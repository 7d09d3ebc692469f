using System.Globalization;
using System.Diagnostics;
using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Protocol;
using SparseDecode.Server.Serving;

namespace SparseDecode.Server.Scheduling;

/// <summary>Continuous batching on one scheduler thread, over any engine. Requests wait in a bounded queue;
/// between two steps the waiting ones join the batch while it has room (fairly between clients, see
/// SchedulerOptions.MaxActivePerClient), and a sequence leaves as soon as it finishes or is cancelled, its KV cache
/// freed at once. One step advances every active sequence by one token: a sequence still prefilling runs its next
/// prompt chunk (the last chunk also yields its first token), and every other one decodes one token in one
/// <see cref="IInferenceEngine.DecodeAndSample"/> call, which also draws its next (on the GPU on the device, only the
/// logits of requests that ask for log-probabilities coming back). On the CPU the batch's sequences are the
/// rows of one step (each keeps its own cache, workspace and plan state; the weights are read once per step for all
/// of them); on the GPU too, every sequence, whatever its method, is a row of one captured step.
/// <para>A request that speculates (<see cref="SequenceRequest.Speculation"/>) takes part in the same steps: while
/// its round drafts, its row decodes the round's next draft step through its plan, and the draft token is kept,
/// not emitted; in the step that completes the round (K drafts, a stop token among them, or no room for any), its
/// dense verification pass runs after the batched call and the tokens it yields are emitted one event each, as
/// the other sequences' tokens are (<see cref="SpeculativeDecoder"/>, whose rounds the command line runs too).</para></summary>
public sealed class BatchScheduler : IDisposable
{
    private readonly ServedModel _model;
    private readonly SchedulerOptions _options;
    private readonly ServerMetrics _metrics;
    private readonly LinkedList<Sequence> _queue = new();
    private readonly List<Sequence> _active = [];
    private readonly object _lock = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    // Scheduler thread only: sequences decoding per client.
    private readonly Dictionary<string, int> _activeByClient = new(StringComparer.Ordinal);
    private volatile bool _stopping, _draining;
    private int _disposed;
    // Queued plus active sequences not yet released: what the batch and the queue hold together.
    private int _outstanding;
    private long _nextId;
    private int _activeCount;
    private long _kvBytes;
    // scheduler thread only
    private readonly PrefixCache _prefixes;

    public BatchScheduler(ServedModel model, SchedulerOptions options, ServerMetrics metrics)
    {
        if (options.MaxBatch < 1) throw new ArgumentException($"max batch must be ≥ 1, got {options.MaxBatch}.");
        if (options.MaxQueue < 0) throw new ArgumentException($"max queue must be ≥ 0, got {options.MaxQueue}.");
        if (options.PrefillChunk < 1) throw new ArgumentException($"prefill chunk must be ≥ 1, got {options.PrefillChunk}.");
        if (options.PrefillBudget < 0) throw new ArgumentException($"prefill budget must be ≥ 0 (0: no limit), got {options.PrefillBudget}.");
        if (options.MaxActivePerClient < 0) throw new ArgumentException($"max active per client must be ≥ 0, got {options.MaxActivePerClient}.");
        if (options.PrefixCacheEntries < 0) throw new ArgumentException($"prefix cache entries must be ≥ 0, got {options.PrefixCacheEntries}.");
        if (options.PrefixCacheBytes < 0) throw new ArgumentException($"prefix cache bytes must be ≥ 0, got {options.PrefixCacheBytes}.");
        if (options.PrefixMinTokens < 1) throw new ArgumentException($"prefix min tokens must be ≥ 1, got {options.PrefixMinTokens}.");
        if (options.MaxUnreadEvents < 1) throw new ArgumentException($"max unread events must be ≥ 1, got {options.MaxUnreadEvents}.");
        _model = model;
        _options = options;
        _metrics = metrics;
        _prefillBudget = options.PrefillBudget > 0 ? options.PrefillBudget : int.MaxValue;
        _pacer = options.PacePrefill ? new PrefillPacer(_prefillBudget) : null;
        _prefixes = new PrefixCache(options.PrefixCacheEntries, options.PrefixMinTokens, options.PrefixCacheBytes);
        _thread = new Thread(Run) { Name = "sparsedecode-scheduler", IsBackground = true };
        _thread.Start();
    }

    public SchedulerOptions Options => _options;

    public int QueueDepth
    {
        get { lock (_lock) return _queue.Count; }
    }

    public int ActiveCount => Volatile.Read(ref _activeCount);

    /// <summary>Prompt tokens the last scheduler step could take (paced or fixed; int.MaxValue: no limit).</summary>
    public int LastPrefillBudget => Volatile.Read(ref _lastPrefillBudget);
    private int _lastPrefillBudget = int.MaxValue;
    public long KvCacheBytes => Interlocked.Read(ref _kvBytes);

    /// <summary>Queues a request. Throws ApiException 429 when the batch and the queue are full, 503 when shutting down.</summary>
    public Sequence Submit(SequenceRequest request)
    {
        if (request.Prompt.Length == 0) throw new ArgumentException("The prompt is empty.");
        lock (_lock)
        {
            if (_stopping || _draining) throw ShuttingDown();
            // Counted together rather than from the active count, which lags until the scheduler admits: a burst
            // gets exactly batch + queue places.
            if (_outstanding >= _options.MaxBatch + _options.MaxQueue)
                throw new ApiException(429, $"The server is busy: {_activeCount} sequences are decoding and {_queue.Count} requests are waiting (the batch holds {_options.MaxBatch}, the queue {_options.MaxQueue}). Retry later.",
                    null, "queue_full");
            if (_options.MaxActivePerClient > 0 && QueuedBy(request.Client) >= QueueShare)
                throw new ApiException(429, $"This client already has {QueueShare} requests waiting (its share of the queue of {_options.MaxQueue}). Retry later.",
                    null, "client_queue_full");
            var seq = new Sequence(this, Interlocked.Increment(ref _nextId), request, _model.Codec);
            seq.QueueNode = _queue.AddLast(seq);
            Interlocked.Increment(ref _outstanding);
            _wake.Release();
            return seq;
        }
    }

    /// <summary>With a per-client cap, one client may also fill at most half the queue, so that the others can
    /// still get in line.</summary>
    private int QueueShare => Math.Max(1, _options.MaxQueue / 2);

    // Under _lock; the queue is short (bounded by --max-queue plus the batch).
    private int QueuedBy(string client)
    {
        int n = 0;
        foreach (var s in _queue) if (s.Request.Client == client) n++;
        return n;
    }

    private static ApiException ShuttingDown() => new(503, "The server is shutting down.", null, "shutting_down");

    /// <summary>Queued plus decoding sequences.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    internal void OnCancelled(Sequence seq)
    {
        lock (_lock)
        {
            if (seq.QueueNode is { List: not null } node)
            {
                _queue.Remove(node);
                seq.QueueNode = null;
                _metrics.Cancelled();
                Free(seq);
                return;
            }
        }
        _wake.Release();
    }

    /// <summary>Releases a sequence that leaves the queue or the batch; exactly once per sequence.</summary>
    private void Free(Sequence seq)
    {
        seq.Release();
        Interlocked.Decrement(ref _outstanding);
    }

    /// <summary>Graceful shutdown: refuses new requests with 503 at once, lets the queued and decoding ones run
    /// for up to `timeout`, then ends every one still there with 503 (an error event and [DONE] on a stream).</summary>
    public async Task DrainAsync(TimeSpan timeout)
    {
        lock (_lock) _draining = true;
        long deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Outstanding > 0 && Stopwatch.GetTimestamp() < deadline) await Task.Delay(20);
        Dispose();
    }

    private void Run()
    {
        while (true)
        {
            // a request waiting for KV cache room is retried a moment later when nothing in the batch will free any
            if (_active.Count == 0) _wake.Wait(_waitingForRoom ? 20 : Timeout.Infinite);
            if (_stopping) break;
            // making and freeing sequences touch the engine too: on the GPU, under the same lock as a step
            _model.Exclusive(Admit);
            if (_active.Count == 0) continue;
            // Drain extra wake-ups so that an idle scheduler blocks again at once.
            while (_wake.CurrentCount > 0 && _wake.Wait(0)) { }
            Step();
            _model.Exclusive(Retire);
        }
        _model.Exclusive(Shutdown);
    }

    // whether the request next in line waits for the engine's KV cache to have room for it
    private bool _waitingForRoom;

    /// <summary>Moves queued requests into the batch while it has places and the engine has room for each one's
    /// prompt plus max_tokens (<see cref="IInferenceEngine.HasRoomFor"/>): a request that does not fit yet stays first
    /// in line until sequences end and give their memory back, so the cache is never overcommitted. One that does not
    /// fit while nothing holds any of the cache never will: it is refused (503 kv_cache_full) instead of holding up
    /// the line.</summary>
    private void Admit()
    {
        _waitingForRoom = false;
        while (_active.Count < _options.MaxBatch)
        {
            Sequence seq;
            bool neverFits = false;
            lock (_lock)
            {
                if (NextFair() is not { } node) return;
                seq = node.Value;
                if (!seq.IsCancelled && !HasRoomFor(seq))
                {
                    if (_active.Count > 0 || _model.Engine.KvPool is not { Total: > 0 } pool || pool.Free < pool.Total)
                    {
                        _waitingForRoom = true;
                        return;
                    }
                    neverFits = true;
                }
                _queue.Remove(node);
                seq.QueueNode = null;
            }
            if (seq.IsCancelled)
            {
                _metrics.Cancelled();
                Free(seq);
                continue;
            }
            if (neverFits)
            {
                var pool = _model.Engine.KvPool;
                seq.Emit(new SequenceEvent("", null, null, new KvCacheFullException(string.Create(CultureInfo.InvariantCulture,
                    $"The request's {Capacity(seq.Request)} positions (prompt plus max_tokens) need more KV cache than the server's {pool.Total / 1e9:F2} GB hold when empty; ask for fewer tokens."))));
                Free(seq);
                continue;
            }
            try
            {
                var r = seq.Request;
                seq.Decoder = FromCachedPrefix(seq) ?? _model.Engine.CreateSequence(Capacity(r), r.Plan);
                seq.Sampler = new Sampler(r.Sampling);
                // the tokens a dense decode writes are kept with its prompt for a later turn of the conversation (a
                // sparse method's keys and values are not what a dense prefill of those tokens writes)
                if (_options.PrefixCacheEntries > 0 && r.Plan is null && r.Speculation is null) seq.Generated = new int[r.MaxTokens];
                if (r.Speculation is { } speculation) seq.Speculator = new SpeculativeDecoder(_model.Engine.Config.VocabSize, speculation);
                if (r.Logprobs is not null) seq.LogprobScratch = new float[_model.Engine.Config.VocabSize];
            }
            catch (Exception e)
            {
                seq.Emit(new SequenceEvent("", null, null, e));
                Free(seq);
                continue;
            }
            _metrics.PromptTokens(seq.PromptTokens);
            _active.Add(seq);
            CountActive(seq.Request.Client, +1);
            Volatile.Write(ref _activeCount, _active.Count);
        }
    }

    /// <summary>Whether the engine has room for the request's sequence now (from the kept prompt cache it will start
    /// from, <see cref="Reuse"/>, which may share memory with it), after freeing kept prompt caches, least recently
    /// used first, while it has not.</summary>
    private bool HasRoomFor(Sequence seq)
    {
        var r = seq.Request;
        while (true)
        {
            seq.Reuse = Reuse(r);
            bool fits = seq.Reuse is var (source, reused)
                ? _model.Engine.HasRoomForFork(source, reused, Capacity(r), r.Plan)
                : _model.Engine.HasRoomFor(Capacity(r), r.Plan);
            if (fits) return true;
            if (!_prefixes.EvictOne()) return false;
        }
    }

    /// <summary>The kept prompt cache sharing the longest prefix with the prompt and the positions of it to reuse:
    /// that prefix rounded down to whole prefill chunks, short of the prompt's last token (whose logits the first
    /// sample needs), so the rest is prefilled in the chunks a prefill from the start would run and its arithmetic is
    /// the same. Null when none is kept or too little is shared.</summary>
    private (IDecodeSequence Source, int Reused)? Reuse(SequenceRequest r)
    {
        if (_prefixes.Find(r.Prompt) is not var (source, shared)) return null;
        int reused = Math.Min(shared, r.Prompt.Length - 1) / _options.PrefillChunk * _options.PrefillChunk;
        return reused >= _options.PrefixMinTokens ? (source, reused) : null;
    }

    /// <summary>A copy of the first positions of the kept prompt cache chosen at admission (<see cref="Reuse"/>);
    /// the request then prefills only the rest. Null when none was chosen or the copy cannot be made.</summary>
    private IDecodeSequence? FromCachedPrefix(Sequence seq)
    {
        var r = seq.Request;
        if (seq.Reuse is not var (source, reused)) return null;
        seq.Reuse = null;
        try
        {
            var copy = source.ForkPrefix(reused, Capacity(r), r.Plan);
            seq.Prefilled = reused;
            seq.CachedPromptTokens = reused;
            _metrics.CachedPromptTokens(reused);
            return copy;
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>Positions a request's sequence holds: its prompt and max_tokens, within the context.</summary>
    private int Capacity(SequenceRequest r) => Math.Min(r.Prompt.Length + r.MaxTokens, _model.Context);

    /// <summary>The queued sequence whose client has the fewest decoding, earliest first among equals, skipping
    /// clients at their cap; null when none may start. The queue is short (bounded by --max-queue).</summary>
    private LinkedListNode<Sequence>? NextFair()
    {
        LinkedListNode<Sequence>? best = null;
        int bestActive = int.MaxValue, cap = _options.MaxActivePerClient;
        for (var node = _queue.First; node is not null && bestActive > 0; node = node.Next)
        {
            int active = _activeByClient.GetValueOrDefault(node.Value.Request.Client);
            if (cap > 0 && active >= cap) continue;
            if (active < bestActive) (best, bestActive) = (node, active);
        }
        return best;
    }

    private void CountActive(string client, int delta)
    {
        int n = _activeByClient.GetValueOrDefault(client) + delta;
        if (n == 0) _activeByClient.Remove(client);
        else _activeByClient[client] = n;
    }

    private readonly List<Sequence> _decoding = [];
    private readonly List<IDecodeSequence> _decoders = [];
    private readonly List<int> _lengths = [];
    private int[] _tokens = new int[16];
    private readonly List<Sampler?> _samplers = [];
    private bool[] _keepLogits = new bool[16];
    private int[] _next = new int[16];

    // prompt tokens a step may take (int.MaxValue: no limit), and with pacing, what sizes each step's share of it
    private readonly int _prefillBudget;
    private readonly PrefillPacer? _pacer;

    private void Step()
    {
        long t0 = Stopwatch.GetTimestamp();
        int before = 0, ready = 0, prompted = 0;
        foreach (var s in _active)
        {
            before += s.CompletionTokens;
            if (!s.Done && !s.IsCancelled && s.Prefilled == s.Request.Prompt.Length) ready++;
        }
        _model.Exclusive(() =>
        {
            _decoding.Clear();
            _prefilling.Clear();
            // the batch is in admission order, so the budget goes to the oldest prompts first
            int budget = _pacer?.Budget(ready) ?? _prefillBudget;
            Volatile.Write(ref _lastPrefillBudget, budget);
            foreach (var s in _active)
            {
                if (s.Done || s.IsCancelled) continue;
                if (s.Prefilled < s.Request.Prompt.Length)
                {
                    int n = Math.Min(Math.Min(_options.PrefillChunk, s.Request.Prompt.Length - s.Prefilled), budget);
                    if (n == 0) continue;
                    _prefilling.Add(s);
                    _chunks.Add(n);
                    budget -= n;
                    prompted += n;
                }
                else if (s.Speculator is null || StartDraftStep(s)) _decoding.Add(s);
            }
            if (_prefilling.Count > 0) PrefillTogether();
            if (_decoding.Count > 0)
            {
                if (_options.ParallelSequences) DecodeTogether(_decoding);
                else
                    foreach (var s in _decoding) DecodeTogether([s]);
            }
            if (_verifying.Count > 0) VerifyTogether();
        });
        int after = 0;
        long kv = 0;
        long now = Stopwatch.GetTimestamp();
        foreach (var s in _active)
        {
            after += s.CompletionTokens;
            kv += s.Decoder?.CacheBytes ?? 0;
            if (s.CompletionTokens > s.TokensTimed)
            {
                if (s.TokensTimed == 0) _metrics.FirstToken(s.MethodLabel, now - s.SubmittedAt);
                else _metrics.TokenGap(s.MethodLabel, now - s.LastTokenAt);
                (s.TokensTimed, s.LastTokenAt) = (s.CompletionTokens, now);
            }
        }
        Interlocked.Exchange(ref _kvBytes, kv);
        _metrics.Step(after - before, now - t0);
        _pacer?.Observe(ready, prompted, (now - t0) / (double)Stopwatch.Frequency);
    }

    private readonly List<Sequence> _prefilling = [];
    private readonly List<int> _chunks = [];
    private readonly List<ReadOnlyMemory<int>> _runs = [];

    /// <summary>Every prompt chunk of this step (_prefilling[i]'s next _chunks[i] tokens) in one engine call, so a
    /// backend that can prefills them as one pass; the sequences whose prompt is then complete sample their first
    /// token. Should the call fail, the chunks it did not run go one at a time, so a failure ends its own sequence
    /// only.</summary>
    private void PrefillTogether()
    {
        _decoders.Clear();
        _lengths.Clear();
        _runs.Clear();
        for (int i = 0; i < _prefilling.Count; i++)
        {
            var seq = _prefilling[i];
            _decoders.Add(seq.Decoder!);
            _lengths.Add(seq.Decoder!.Length);
            _runs.Add(seq.Request.Prompt.AsMemory(seq.Prefilled, _chunks[i]));
        }
        bool ran = true;
        try
        {
            if (_prefilling.Count > 1) _model.Engine.PrefillBatch(_decoders, _runs);
            else ran = false;
        }
        catch (Exception)
        {
            ran = false;
        }
        for (int i = 0; i < _prefilling.Count; i++)
        {
            var seq = _prefilling[i];
            if (!ran && seq.Decoder!.Length == _lengths[i])
            {
                PrefillChunk(seq, _chunks[i]);
                continue;
            }
            try
            {
                seq.Prefilled += _chunks[i];
                if (seq.Prefilled == seq.Request.Prompt.Length) Sample(seq);
            }
            catch (Exception e)
            {
                seq.Emit(new SequenceEvent("", null, null, e));
            }
        }
        _chunks.Clear();
    }

    /// <summary>The sequence's next `n` prompt tokens; the last chunk also samples its first token. A failure ends
    /// that sequence only.</summary>
    private void PrefillChunk(Sequence seq, int n)
    {
        try
        {
            var prompt = seq.Request.Prompt;
            seq.Decoder!.Prefill(prompt.AsSpan(seq.Prefilled, n));
            seq.Prefilled += n;
            if (seq.Prefilled == prompt.Length) Sample(seq);
        }
        catch (Exception e)
        {
            seq.Emit(new SequenceEvent("", null, null, e));
        }
    }

    /// <summary>One decode step of every sequence in `batch` in one engine call, then each samples. Should the call
    /// fail, the sequences it did not advance end with the error and the ones it did go on.</summary>
    private void DecodeTogether(IReadOnlyList<Sequence> batch)
    {
        _decoders.Clear();
        _lengths.Clear();
        _samplers.Clear();
        if (_tokens.Length < batch.Count)
        {
            int size = Math.Max(batch.Count, 2 * _tokens.Length);
            (_tokens, _keepLogits, _next) = (new int[size], new bool[size], new int[size]);
        }
        for (int i = 0; i < batch.Count; i++)
        {
            var seq = batch[i];
            _decoders.Add(seq.Decoder!);
            _lengths.Add(seq.Decoder!.Length);
            _tokens[i] = seq.Speculator is null ? seq.LastToken : seq.DraftInput;
            // a draft step's token is the speculator's to choose, from the logits
            _samplers.Add(seq.Speculator is null ? seq.Sampler : null);
            _keepLogits[i] = seq.Request.Logprobs is not null;
        }
        // a call that fails part-way leaves -1 (draw on the host) for the sequences it advanced
        _next.AsSpan(0, batch.Count).Fill(-1);
        Exception? failure = null;
        try
        {
            _model.Engine.DecodeAndSample(_decoders, _tokens.AsSpan(0, batch.Count), _samplers, _keepLogits.AsSpan(0, batch.Count), _next);
        }
        catch (Exception e)
        {
            failure = e is AggregateException { InnerExceptions.Count: > 0 } a ? a.InnerExceptions[0] : e;
        }
        for (int i = 0; i < batch.Count; i++)
        {
            var seq = batch[i];
            if (seq.Decoder!.Length > _lengths[i])
            {
                try
                {
                    if (seq.Speculator is { } speculator) Drafted(seq, speculator);
                    else if (_next[i] >= 0) Emit(seq, _next[i], _keepLogits[i] ? seq.Decoder.Logits : default);
                    else Sample(seq);
                }
                catch (Exception e)
                {
                    seq.Emit(new SequenceEvent("", null, null, e));
                }
            }
            else seq.Emit(new SequenceEvent("", null, null, failure ?? new InvalidOperationException("The decode step did not advance this sequence.")));
        }
    }

    /// <summary>Begins a speculating sequence's round if none is in progress (its pending token is the last one
    /// emitted), and readies its row of this step: true when the round decodes a draft step in the batch. A round
    /// with no room for drafts (the request's last token) waits for this step's verification. A failure ends that
    /// sequence only.</summary>
    private bool StartDraftStep(Sequence seq)
    {
        var speculator = seq.Speculator!;
        try
        {
            if (!speculator.InRound)
            {
                var decoder = seq.Decoder!;
                // the pass's tokens stay within max_tokens (the pass adds one of its own) and the cache
                int room = Math.Min(seq.Request.MaxTokens - seq.CompletionTokens - 1, decoder.Capacity - decoder.Length - 1);
                speculator.Begin(decoder, seq.Request.Plan, seq.LastToken, room);
            }
            if (speculator.Drafting)
            {
                seq.DraftInput = speculator.NextDraftInput();
                return true;
            }
            _verifying.Add(seq);
        }
        catch (Exception e)
        {
            seq.Emit(new SequenceEvent("", null, null, e));
        }
        return false;
    }

    /// <summary>After a speculating sequence's draft step: its draft token; when that completes the round, the
    /// sequence waits for this step's verification (<see cref="VerifyTogether"/>).</summary>
    private void Drafted(Sequence seq, SpeculativeDecoder speculator)
    {
        speculator.Drafted(seq.Sampler!, seq.Request.IgnoreEos ? NoStopTokens : _model.StopTokenIds);
        if (!speculator.Drafting) _verifying.Add(seq);
    }

    private readonly List<Sequence> _verifying = [];
    private readonly List<Sequence> _passing = [];
    private readonly List<ReadOnlyMemory<int>> _passTokens = [];
    private readonly List<Memory<float>> _passLogits = [];

    /// <summary>The dense passes of every round this step completed, in one engine call where the engine's sequences run
    /// exact passes (<see cref="IInferenceEngine.DecodeDenseBatch"/>: on the GPU the rows of one step), else one by
    /// one; then each sequence emits its kept tokens. Should the call fail, its sequences end with the error.</summary>
    private void VerifyTogether()
    {
        if (!_model.SpeculativeSequences || _verifying.Count == 1)
        {
            foreach (var seq in _verifying)
                try
                {
                    Verify(seq, seq.Speculator!);
                }
                catch (Exception e)
                {
                    seq.Emit(new SequenceEvent("", null, null, e));
                }
            _verifying.Clear();
            return;
        }
        _passing.Clear();
        _decoders.Clear();
        _passTokens.Clear();
        _passLogits.Clear();
        foreach (var seq in _verifying)
            try
            {
                var (decoder, tokens, logits) = seq.Speculator!.EndDrafting();
                _passing.Add(seq);
                _decoders.Add(decoder);
                _passTokens.Add(tokens);
                _passLogits.Add(logits);
            }
            catch (Exception e)
            {
                seq.Emit(new SequenceEvent("", null, null, e));
            }
        _verifying.Clear();
        Exception? failure = null;
        try
        {
            _model.Engine.DecodeDenseBatch(_decoders, _passTokens, _passLogits);
        }
        catch (Exception e)
        {
            failure = e;
        }
        foreach (var seq in _passing)
            try
            {
                if (failure is not null) throw failure;
                Emit(seq, seq.Speculator!.Accept(seq.Sampler!), seq.Speculator);
            }
            catch (Exception e)
            {
                seq.Emit(new SequenceEvent("", null, null, e));
            }
    }

    private static readonly IReadOnlySet<int> NoStopTokens = new HashSet<int>();

    /// <summary>The round's dense pass; its tokens are emitted in order, as decoding would have emitted them one
    /// per step, until one ends the request (what follows it is dropped, as dense decoding never makes it).</summary>
    private void Verify(Sequence seq, SpeculativeDecoder speculator) => Emit(seq, speculator.Verify(seq.Sampler!), speculator);

    /// <summary>A round's tokens in order, each chosen from its row of the dense pass, until one ends the request.</summary>
    private void Emit(Sequence seq, ReadOnlySpan<int> tokens, SpeculativeDecoder speculator)
    {
        for (int i = 0; i < tokens.Length && !seq.Done; i++) Emit(seq, tokens[i], speculator.VerifiedLogits(i));
    }

    private void Sample(Sequence seq)
    {
        var logits = seq.Decoder!.Logits;
        Emit(seq, seq.Sampler!.Next(logits), logits);
    }

    /// <summary>Emits `next`, chosen from `logits`, as the sequence's next token: its text (held back while it may
    /// begin a stop string), its log-probabilities if asked for, and the finish reason when it ends the request.</summary>
    private void Emit(Sequence seq, int next, ReadOnlySpan<float> logits)
    {
        var r = seq.Request;
        seq.LastToken = next;
        if (seq.Generated is { } generated && seq.CompletionTokens < generated.Length) generated[seq.CompletionTokens] = next;
        seq.CompletionTokens++;
        var logprob = r.Logprobs is int top ? Logprobs.Of(logits, next, top, seq.LogprobScratch!, _model.Codec) : null;
        if (!r.IgnoreEos && _model.StopTokenIds.Contains(next))
        {
            string rest = seq.Stops.Push(seq.Text.Flush()) + seq.Stops.Flush();
            seq.Emit(new SequenceEvent(rest, logprob, "stop", null));
            return;
        }
        string text = seq.Stops.Push(seq.Text.Push(next));
        if (seq.Stops.Stopped)
        {
            seq.Emit(new SequenceEvent(text, logprob, "stop", null));
            return;
        }
        if (seq.CompletionTokens >= r.MaxTokens)
        {
            text += seq.Stops.Push(seq.Text.Flush());
            if (!seq.Stops.Stopped) text += seq.Stops.Flush();
            seq.Emit(new SequenceEvent(text, logprob, seq.Stops.Stopped ? "stop" : "length", null));
            return;
        }
        seq.Emit(new SequenceEvent(text, logprob, null, null));
    }

    /// <summary>Takes finished and cancelled sequences out of the batch and frees their caches.</summary>
    private void Retire()
    {
        int kept = 0;
        for (int i = 0; i < _active.Count; i++)
        {
            var s = _active[i];
            if (s.Done || s.IsCancelled)
            {
                _metrics.CompletionTokens(s.CompletionTokens);
                if (s.Speculator?.Stats is { } speculation) _metrics.Speculation(speculation.Passes, speculation.Drafted, speculation.Accepted);
                if (s.IsCancelled && !s.Done) _metrics.Cancelled();
                else if (s.TokensTimed > 0) _metrics.RequestTime(s.MethodLabel, s.LastTokenAt - s.SubmittedAt);
                // a prompt run to its end is kept, with the tokens decoded after it, for requests that begin the same way
                if (!s.Failed && s.Decoder is { } decoder && s.Prefilled == s.Request.Prompt.Length && _prefixes.Keep(Written(s), decoder))
                    s.Decoder = null;
                CountActive(s.Request.Client, -1);
                Free(s);
            }
            else _active[kept++] = s;
        }
        _active.RemoveRange(kept, _active.Count - kept);
        Volatile.Write(ref _activeCount, _active.Count);
        if (_active.Count == 0) Interlocked.Exchange(ref _kvBytes, 0);
    }

    /// <summary>The tokens whose keys and values a finished sequence holds, in order: its prompt, then the tokens it
    /// decoded (every emitted token but the last, which never ran).</summary>
    private static int[] Written(Sequence s)
    {
        var prompt = s.Request.Prompt;
        int decoded = s.Generated is { } g ? Math.Clamp(Math.Min(s.CompletionTokens - 1, s.Decoder!.Length - prompt.Length), 0, g.Length) : 0;
        if (decoded == 0) return prompt;
        var tokens = new int[prompt.Length + decoded];
        prompt.CopyTo(tokens, 0);
        s.Generated.AsSpan(0, decoded).CopyTo(tokens.AsSpan(prompt.Length));
        return tokens;
    }

    private void Shutdown()
    {
        var gone = ShuttingDown();
        List<Sequence> all;
        lock (_lock)
        {
            all = [.. _queue, .. _active];
            _queue.Clear();
        }
        _active.Clear();
        _activeByClient.Clear();
        _prefixes.Dispose();
        Volatile.Write(ref _activeCount, 0);
        foreach (var s in all)
        {
            if (!s.Done) s.Emit(new SequenceEvent("", null, null, gone));
            Free(s);
        }
        Interlocked.Exchange(ref _kvBytes, 0);
    }

    /// <summary>Stops at once: queued and decoding sequences end with 503. Safe to call more than once.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        lock (_lock) _stopping = true;
        _wake.Release();
        _thread.Join();
        // _wake is not disposed: a handler may still cancel its (finished) sequence, which signals it.
    }
}
