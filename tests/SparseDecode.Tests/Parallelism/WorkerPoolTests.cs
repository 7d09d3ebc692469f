using SparseDecode.Cpu;

namespace SparseDecode.Tests.Parallelism;

public class WorkerPoolTests
{
    /// <summary>Counts how often each item ran and which worker slots ran them.</summary>
    private sealed class CountingWork(int count, int threads) : ParallelWork
    {
        public readonly int[] Runs = new int[count];
        public readonly int[] BySlot = new int[threads];

        public override void Execute(int item, int worker)
        {
            Interlocked.Increment(ref Runs[item]);
            Interlocked.Increment(ref BySlot[worker]);
            Thread.SpinWait(200);
        }
    }

    [Fact]
    public void EveryItemRunsExactlyOnceOverManyRegions()
    {
        using var pool = new WorkerPool(3);
        for (int region = 0; region < 2000; region++)
        {
            int count = 1 + region % 37;
            var work = new CountingWork(count, 3);
            pool.Run(work, count);
            Assert.All(work.Runs, r => Assert.Equal(1, r));
            Assert.Equal(count, work.BySlot.Sum());
        }
    }

    [Fact]
    public void ConcurrentCallersEachRunTheirOwnItems()
    {
        using var pool = new WorkerPool(2);
        var works = Enumerable.Range(0, 8).Select(_ => new CountingWork(50, 2)).ToArray();
        Parallel.For(0, works.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            for (int rep = 0; rep < 20; rep++) pool.Run(works[i], 50);
        });
        Assert.All(works, w => Assert.All(w.Runs, r => Assert.Equal(20, r)));
    }

    private sealed class ThrowingWork : ParallelWork
    {
        public override void Execute(int item, int worker)
        {
            if (item == 5) throw new InvalidOperationException("item 5");
        }
    }

    [Fact]
    public void AnItemsExceptionReachesTheCallerAndThePoolStaysUsable()
    {
        using var pool = new WorkerPool(2);
        var e = Assert.Throws<InvalidOperationException>(() => pool.Run(new ThrowingWork(), 10));
        Assert.Equal("item 5", e.Message);
        var work = new CountingWork(10, 2);
        pool.Run(work, 10);
        Assert.All(work.Runs, r => Assert.Equal(1, r));
    }

    [Fact]
    public void ThreadCountsBelowOneAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new WorkerPool(0));
        Assert.True(CpuTopology.PhysicalCores >= 1 && CpuTopology.PhysicalCores <= Environment.ProcessorCount);
    }
}
