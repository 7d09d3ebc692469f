using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>How many threads the engine uses by default: one per physical core this process may run on. A
/// matrix-vector product streams weights at the memory's pace, so a second hardware thread on a core (SMT) adds
/// contention, not bandwidth; llama.cpp chooses the same default.</summary>
public static class CpuTopology
{
    /// <summary>Physical cores available to this process: logical processors (affinity and container limits
    /// applied) divided by the hardware threads per core, at least 1.</summary>
    public static int PhysicalCores { get; } = Count();

    private static int Count()
    {
        int logical = Environment.ProcessorCount;
        int perCore = ThreadsPerCore();
        return Math.Max(1, logical / Math.Max(1, perCore));
    }

    /// <summary>Hardware threads per core from Linux's topology files (cpu0's siblings); 1 where they are absent.</summary>
    private static int ThreadsPerCore()
    {
        try
        {
            const string siblings = "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list";
            if (!File.Exists(siblings)) return 1;
            // "0", "0,64" or "0-1": count the listed CPUs
            int count = 0;
            foreach (var part in File.ReadAllText(siblings).Trim().Split(','))
            {
                var range = part.Split('-');
                count += range.Length == 2 ? int.Parse(range[1]) - int.Parse(range[0]) + 1 : 1;
            }
            return Math.Max(1, count);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return 1;
        }
    }
}
