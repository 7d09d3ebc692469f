using System.CommandLine;
using System.Diagnostics;
using SparseDecode.Cuda;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cli.TensorParallel;

/// <summary>One process per GPU for `--tensor-parallel N`: the process the user started is rank 0; it makes the NCCL
/// unique id, starts N − 1 copies of itself with `--tp-rank r` and CUDA_VISIBLE_DEVICES naming its GPU r (so every
/// rank opens device 0 of what it sees), and writes the id to each worker's standard input, one line of hex. A
/// worker's output goes to rank 0's stderr, each line prefixed with its rank; rank 0 waits for them all.</summary>
internal sealed class RankLauncher : IDisposable
{
    public const string RankOptionName = "--tp-rank";

    /// <summary>The program's own command line, as Main received it.</summary>
    public static string[] CommandLine { get; set; } = [];

    public int Rank { get; }
    public int Ranks { get; }
    public NcclUniqueId Id { get; }
    private readonly List<(int Rank, Process Process)> _workers = [];

    private RankLauncher(int rank, int ranks, NcclUniqueId id)
    {
        Rank = rank;
        Ranks = ranks;
        Id = id;
    }

    public static Option<int> TensorParallelOption() => new("--tensor-parallel")
    {
        Description = "GPUs to shard the model over. Only 1 runs today: for N > 1 the model's split is checked and the command refused, as the sharded decode step is not built yet (gpu-nccl-check tests NCCL between N GPUs).",
        DefaultValueFactory = _ => 1,
    };

    /// <summary>The hidden option a worker is started with; -1 in the user's process.</summary>
    public static Option<int> RankOption() => new(RankOptionName) { Hidden = true, DefaultValueFactory = _ => -1 };

    /// <summary>Rank 0: checks that N GPUs are visible, makes the id and starts the workers. A worker (`rank` ≥ 1):
    /// reads the id rank 0 wrote to its standard input.</summary>
    public static RankLauncher Start(int ranks, int rank)
    {
        if (ranks < 1) throw new ArgumentException($"--tensor-parallel must be at least 1, got {ranks}.");
        if (rank >= ranks) throw new ArgumentException($"{RankOptionName} {rank} is not below --tensor-parallel {ranks}.");
        if (rank > 0)
        {
            string line = Console.In.ReadLine() ?? throw new ArgumentException($"Rank {rank} got no NCCL unique id on its standard input.");
            return new RankLauncher(rank, ranks, NcclUniqueId.FromHex(line));
        }
        int visible = CudaDevice.Count();
        if (visible < ranks) throw new CudaUnavailableException($"--tensor-parallel {ranks} needs {ranks} GPUs but this process sees {visible}.");
        var launcher = new RankLauncher(0, ranks, NcclCommunicator.CreateId());
        try
        {
            for (int r = 1; r < ranks; r++) launcher._workers.Add((r, launcher.StartWorker(r)));
        }
        catch
        {
            launcher.Dispose();
            throw;
        }
        return launcher;
    }

    private Process StartWorker(int rank)
    {
        var (program, prefix) = SelfCommand();
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in prefix.Concat(WorkerArguments(CommandLine, rank))) info.ArgumentList.Add(a);
        info.Environment["CUDA_VISIBLE_DEVICES"] = DeviceFor(rank, Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES"));
        info.Environment["NCCL_NVLS_ENABLE"] = "0";
        var p = Process.Start(info) ?? throw new InvalidOperationException($"Rank {rank}'s process could not be started.");
        p.OutputDataReceived += (_, e) => Forward(rank, e.Data);
        p.ErrorDataReceived += (_, e) => Forward(rank, e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        p.StandardInput.WriteLine(Id.ToHex());
        p.StandardInput.Close();
        return p;
    }

    private static void Forward(int rank, string? line)
    {
        if (line is not null) Console.Error.WriteLine($"rank {rank}: {line}");
    }

    /// <summary>Waits for every worker (rank 0 only; none elsewhere) and returns how many failed, naming each.</summary>
    public int WaitForWorkers(TimeSpan timeout)
    {
        int failed = 0;
        foreach (var (rank, p) in _workers)
        {
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                Console.Error.WriteLine($"error: rank {rank} did not finish within {timeout.TotalSeconds:F0} s and was stopped.");
                failed++;
                continue;
            }
            p.WaitForExit();   // drains the redirected output
            if (p.ExitCode != 0)
            {
                Console.Error.WriteLine($"error: rank {rank} exited with code {p.ExitCode}.");
                failed++;
            }
        }
        return failed;
    }

    /// <summary>The worker's arguments: the user's, with the rank option appended (after any `--`-free list the
    /// parser accepts options anywhere).</summary>
    public static string[] WorkerArguments(string[] args, int rank) => [.. args, RankOptionName, rank.ToString(System.Globalization.CultureInfo.InvariantCulture)];

    /// <summary>CUDA_VISIBLE_DEVICES for rank r: the r-th entry of the list rank 0 sees, or "r" when it sees all.</summary>
    public static string DeviceFor(int rank, string? visible)
    {
        if (string.IsNullOrWhiteSpace(visible)) return rank.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var list = visible.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return rank < list.Length ? list[rank]
            : throw new CudaUnavailableException($"Rank {rank} needs GPU {rank} of CUDA_VISIBLE_DEVICES={visible}, which lists {list.Length}.");
    }

    /// <summary>How to start this program again: the single-file executable itself, or `dotnet the.dll`.</summary>
    private static (string Program, string[] Prefix) SelfCommand()
    {
        string process = Environment.ProcessPath ?? throw new InvalidOperationException("The program's own path is unknown; workers cannot be started.");
        string name = Path.GetFileNameWithoutExtension(process);
        // under `dotnet SparseDecode.Cli.dll` the first command-line argument is the assembly's path
        if (name == "dotnet" && Environment.GetCommandLineArgs() is [{ Length: > 0 } dll, ..]) return (process, [dll]);
        return (process, []);
    }

    public void Dispose()
    {
        foreach (var (_, p) in _workers)
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.Dispose();
        }
        _workers.Clear();
    }
}
