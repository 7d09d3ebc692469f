using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>A piece of parallel work split into numbered items, bound to its arguments before it is run: an
/// instance is created once (per workspace, or per calling thread) and reused for every call, so running it
/// allocates nothing. <see cref="WorkerPool.Run"/> calls Execute once for every item in [0, count), on any of
/// the pool's threads; `worker` (in [0, pool threads)) is the running thread's slot, for per-thread scratch.</summary>
public abstract class ParallelWork
{
    public abstract void Execute(int item, int worker);
}
