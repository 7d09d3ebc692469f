using System.Diagnostics;
using System.Runtime.ExceptionServices;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>A fixed set of threads for the engine's parallel loops, kept between calls. A decode step of a small
/// model is ~40 parallel regions of a few microseconds each: Parallel.For's per-call task set-up (and its ~1.5 KB
/// of bookkeeping) was a large share of that, so here the threads stay parked on a counter and a call only
/// publishes its work and a new generation number. Workers spin briefly after each region (the next one comes
/// within microseconds during a step) and then sleep, so an idle engine costs no CPU. The calling thread takes
/// part as worker 0. Items are handed out one by one through an atomic counter, so uneven items balance.
/// One region runs at a time: a call made while the pool is busy (another sequence's step, or a call from
/// inside a work item) runs its items on the calling thread instead, which is what a batch of sequences already
/// running in parallel wants.</summary>
public sealed class WorkerPool : IDisposable
{
    private static readonly object s_sharedLock = new();
    private static WorkerPool? s_shared;

    /// <summary>The engine's pool, with <see cref="CpuTopology.PhysicalCores"/> threads unless
    /// <see cref="SetSharedThreads"/> chose otherwise.</summary>
    public static WorkerPool Shared
    {
        get
        {
            var pool = Volatile.Read(ref s_shared);
            if (pool is not null) return pool;
            lock (s_sharedLock) return s_shared ??= new WorkerPool(CpuTopology.PhysicalCores);
        }
    }

    /// <summary>Replaces the shared pool by one of `threads` threads (the command line's --threads). Call before
    /// the engine runs: work already running keeps the old pool until it finishes.</summary>
    public static void SetSharedThreads(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), $"The thread count must be at least 1, got {threads}.");
        lock (s_sharedLock)
        {
            if (s_shared?.Threads == threads) return;
            var old = s_shared;
            s_shared = new WorkerPool(threads);
            old?.Dispose();
        }
    }

    /// <summary>How long a worker spins for the next region before it sleeps: longer than the serial work between
    /// two regions of a step (norms, RoPE, the cache write: a few µs), short enough that a spinning worker does not
    /// take much CPU from other processes on a shared machine.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 20000; // 50 µs

    [ThreadStatic] private static WorkerPool? t_insideOf;

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private int _busy, _sleepers;
    private volatile bool _disposed;

    // The current region: generation (high 32 bits), item count (16 bits) and the next unclaimed item (low 16
    // bits) in one word, so that a worker claims an item with one compare-and-swap that fails if the region has
    // changed meanwhile; a late worker can never take an item of the next region with the last one's count.
    private long _state;
    private ParallelWork? _work; // written before the state that publishes it
    private int _done;
    private Exception? _error;

    /// <summary>The most items one region may have.</summary>
    public const int MaxItems = ushort.MaxValue;

    private static long Generation(long state) => state >>> 32;
    private static int Count(long state) => (int)(state >> 16) & 0xFFFF;
    private static int NextItem(long state) => (int)state & 0xFFFF;

    public int Threads { get; }

    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), $"The thread count must be at least 1, got {threads}.");
        Threads = threads;
        _threads = new Thread[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int slot = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(slot)) { IsBackground = true, Name = $"SparseDecode worker {slot}" };
            _threads[i].Start();
        }
    }

    /// <summary>Runs work.Execute(item, worker) for every item in [0, count) and returns when all have finished;
    /// the first exception an item threw is rethrown here.</summary>
    public void Run(ParallelWork work, int count)
    {
        if (count <= 0) return;
        if (count > MaxItems) throw new ArgumentOutOfRangeException(nameof(count), $"A parallel region holds at most {MaxItems} items, got {count}.");
        if (count == 1 || _threads.Length == 0 || t_insideOf == this || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++) work.Execute(i, 0);
            return;
        }
        try
        {
            _work = work;
            _done = 0;
            _error = null;
            long generation = Generation(_state) + 1;
            // a full fence: the fields above are visible to whoever sees the new state
            Interlocked.Exchange(ref _state, (generation << 32) | ((long)count << 16));
            if (Volatile.Read(ref _sleepers) > 0)
                lock (_gate) Monitor.PulseAll(_gate);
            t_insideOf = this;
            try
            {
                Take(0);
            }
            finally
            {
                t_insideOf = null;
            }
            var spin = new SpinWait();
            while (Volatile.Read(ref _done) < count) spin.SpinOnce(sleep1Threshold: -1);
            _work = null;
            if (_error is { } e) ExceptionDispatchInfo.Throw(e);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Claims and runs items of the current region until none is left.</summary>
    private void Take(int worker)
    {
        while (true)
        {
            long s = Volatile.Read(ref _state);
            if (NextItem(s) >= Count(s)) return;
            var work = _work;
            if (Interlocked.CompareExchange(ref _state, s + 1, s) != s) continue;
            try
            {
                work!.Execute(NextItem(s), worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            Interlocked.Increment(ref _done);
        }
    }

    private void WorkerLoop(int slot)
    {
        t_insideOf = this;
        long seen = Generation(Volatile.Read(ref _state));
        while (true)
        {
            long next = WaitForRegion(seen);
            if (_disposed) return;
            seen = next;
            Take(slot);
        }
    }

    /// <summary>Spins, then sleeps, until the generation moves past `seen` (or the pool is disposed).</summary>
    private long WaitForRegion(long seen)
    {
        long until = Stopwatch.GetTimestamp() + SpinTicks;
        var spin = new SpinWait();
        long g;
        while ((g = Generation(Volatile.Read(ref _state))) == seen && !_disposed)
        {
            if (Stopwatch.GetTimestamp() > until)
            {
                // announce the sleep before checking once more under the lock: Run reads _sleepers after
                // advancing the generation, so either it sees us and pulses, or we see its generation
                Interlocked.Increment(ref _sleepers);
                lock (_gate)
                    while ((g = Generation(Volatile.Read(ref _state))) == seen && !_disposed) Monitor.Wait(_gate);
                Interlocked.Decrement(ref _sleepers);
                return g;
            }
            spin.SpinOnce(sleep1Threshold: -1);
        }
        return g;
    }

    public void Dispose()
    {
        _disposed = true;
        lock (_gate) Monitor.PulseAll(_gate);
    }
}
