using System.CommandLine;
using System.Globalization;
using SparseDecode.Cli.TensorParallel;
using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`gpu-nccl-check --tensor-parallel N`: one process per GPU joins one NCCL communicator; every rank
/// all-reduces and all-gathers known buffers (eagerly and from a CUDA graph) and checks the sums, then times the
/// all-reduce of the 8B and 70B hidden sizes (bf16, batch 1 and 8) and the logits' all-gather. Runs with N = 1 too.
/// Exit 2 when a check fails on any rank.</summary>
internal static class GpuNcclCheckCommand
{
    public static Command Create()
    {
        var ranks = RankLauncher.TensorParallelOption();
        ranks.Description = "GPUs to check, one process each (NCCL between them; NVLink multicast stays off).";
        var rank = RankLauncher.RankOption();
        var reps = new Option<int>("--reps") { Description = "Timed replays per collective (median reported).", DefaultValueFactory = _ => 200 };
        var cmd = new Command("gpu-nccl-check", "Check NCCL collectives across GPUs (one process each) and time the all-reduces tensor parallelism needs.")
            { ranks, rank, reps };
        cmd.SetAction(r => CliErrors.Run(() => Run(r.GetValue(ranks), r.GetValue(rank), Math.Max(1, r.GetValue(reps)))));
        return cmd;
    }

    private static int Run(int ranks, int rankOption, int reps)
    {
        var ci = CultureInfo.InvariantCulture;
        int rank = Math.Max(0, rankOption);
        if (CudaDevice.Probe() is string noGpu) throw new CudaUnavailableException(noGpu);
        if (NcclCommunicator.Probe() is string noNccl) throw new NcclException(noNccl);
        using var launcher = RankLauncher.Start(ranks, rank);
        using var device = CudaDevice.Open();
        using var stream = new CudaStream(device);
        if (rank == 0)
        {
            var (version, path) = NcclCommunicator.Library();
            Console.WriteLine(string.Create(ci, $"NCCL {version} ({path}), {ranks} rank(s), one process per GPU; NCCL_NVLS_ENABLE={Environment.GetEnvironmentVariable("NCCL_NVLS_ENABLE")}"));
            Console.WriteLine(string.Create(ci, $"rank 0: {device.Name}, {device.Architecture}, {device.TotalMemory / 1e9:F1} GB"));
        }
        else Console.WriteLine(string.Create(ci, $"{device.Name}, CUDA_VISIBLE_DEVICES={Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES")}"));
        using var comm = NcclCommunicator.Join(device, launcher.Id, ranks, rank);
        var checks = NcclCheck.Verify(comm, device, stream);
        var shapes = GpuShapes.All.Select(s => (s.ArchitectureName, s.HiddenSize));
        var timings = NcclCheck.Time(comm, device, stream, reps, shapes, [1, 8], GpuShapes.Llama31_8B.VocabSize);
        int failed = checks.Count(c => !c.Passed);
        if (rank > 0)
        {
            Console.WriteLine($"{checks.Count - failed} of {checks.Count} collective checks pass");
            foreach (var c in checks.Where(c => !c.Passed)) Console.WriteLine(string.Create(ci, $"FAIL {c.Name}: max |error| {c.MaxError:G3}"));
            return failed > 0 ? 2 : 0;
        }
        Console.WriteLine("\ncollectives over known buffers (exact sums: any error fails)");
        Console.WriteLine("| check | max |error| | result |");
        Console.WriteLine("|---|---:|---|");
        foreach (var c in checks) Console.WriteLine(string.Create(ci, $"| {c.Name} | {c.MaxError:G3} | {(c.Passed ? "pass" : "FAIL")} |"));
        Console.WriteLine(string.Create(ci, $"\ncollectives replayed from a CUDA graph, {reps} replays, rank 0's median (two all-reduces per layer and token in a tensor-parallel step)"));
        Console.WriteLine("| collective | bytes | µs | spread | bus GB/s |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var t in timings)
            Console.WriteLine(string.Create(ci, $"| {t.Name} | {t.Bytes} | {t.Microseconds:F1} | {t.Spread:P0} | {t.BusGBps:F1} |"));
        int workersFailed = launcher.WaitForWorkers(TimeSpan.FromMinutes(2));
        if (failed > 0) Console.Error.WriteLine($"error: {failed} collective check(s) failed on rank 0.");
        return failed + workersFailed > 0 ? 2 : 0;
    }
}
