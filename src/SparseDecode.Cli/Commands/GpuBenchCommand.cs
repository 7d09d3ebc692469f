using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cli.Commands;

/// <summary>`gpu-bench`: checks every CUDA decode kernel against the f64 reference, then times them per layer at
/// Llama-3.1-8B head shapes beside the bandwidth floor (bench/gpu/run.sh adds PyTorch's numbers beside them).</summary>
internal static class GpuBenchCommand
{
    public static Command Create()
    {
        var contexts = new Option<string>("--contexts") { Description = "Context lengths, comma-separated.", DefaultValueFactory = _ => "8192,32768,131072" };
        var batched = new Option<string>("--batched") { Description = "Batched cases CONTEXTxBATCH, comma-separated (empty: none).", DefaultValueFactory = _ => "32768x8" };
        var budget = new Option<int>("--budget") { Description = "Keys attended per KV head by the sparse methods.", DefaultValueFactory = _ => 2048 };
        var reps = new Option<int>("--reps") { Description = "Timed graph replays per operation (median reported).", DefaultValueFactory = _ => 15 };
        var ops = new Option<int>("--ops") { Description = "Operations per captured graph.", DefaultValueFactory = _ => 24 };
        var checkOnly = new Option<bool>("--check-only") { Description = "Only check the kernels against the reference." };
        var noCheck = new Option<bool>("--no-check") { Description = "Skip the correctness checks." };
        var json = new Option<string?>("--json") { Description = "Write every row and check to this JSON file." };
        var cmd = new Command("gpu-bench", "Check the CUDA decode kernels against a float64 reference and time them per layer at 8K-128K context.")
        {
            contexts, batched, budget, reps, ops, checkOnly, noCheck, json,
        };
        cmd.SetAction(r =>
        {
            try
            {
                return Run(ParseInts(r.GetValue(contexts)!), ParseBatched(r.GetValue(batched)!), r.GetValue(budget), r.GetValue(reps),
                    r.GetValue(ops), r.GetValue(checkOnly), r.GetValue(noCheck), r.GetValue(json));
            }
            catch (Exception e) when (e is CudaException or ArgumentException or FormatException or IOException)
            {
                Console.Out.Flush();
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return cmd;
    }

    private static int[] ParseInts(string s) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();

    private static (int, int)[] ParseBatched(string s) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x =>
        {
            var p = x.Split('x');
            if (p.Length != 2) throw new FormatException($"--batched takes CONTEXTxBATCH, got '{x}'.");
            return (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture));
        }).ToArray();

    private static int Run(int[] contexts, (int, int)[] batched, int budget, int reps, int ops, bool checkOnly, bool noCheck, string? jsonPath)
    {
        var ci = CultureInfo.InvariantCulture;
        using var device = CudaDevice.Open();
        Console.WriteLine(string.Create(ci, $"GPU: {device.Name}, {device.Architecture}, {device.Multiprocessors} SMs, L2 {device.L2Bytes / 1e6:F0} MB, {device.TotalMemory / 1e9:F1} GB, driver {device.DriverVersion / 1000}.{device.DriverVersion % 1000 / 10}"));
        var sw = Stopwatch.StartNew();
        using var kernels = new DecodeKernels(device);
        Console.WriteLine(string.Create(ci, $"kernels: {DecodeKernels.SourceFile} {(kernels.FromCache ? "loaded from the disk cache" : "compiled by NVRTC")} in {sw.Elapsed.TotalMilliseconds:F0} ms ({KernelSource.CacheDirectory()})"));
        if (!string.IsNullOrWhiteSpace(kernels.CompileLog)) Console.WriteLine($"NVRTC log:\n{kernels.CompileLog}");
        Console.WriteLine("| kernel | registers | local (spill) bytes | static shared bytes | blocks/SM |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var (name, regs, local, shared, blocks) in kernels.Resources())
            Console.WriteLine($"| {name} | {regs} | {local} | {shared} | {blocks} |");

        var checks = new List<GpuSelfCheck.Result>();
        if (!noCheck)
        {
            sw.Restart();
            checks.AddRange(GpuSelfCheck.Run(kernels, seed: Environment.TickCount));
            Console.WriteLine(string.Create(ci, $"\ncorrectness against the float64 reference ({sw.Elapsed.TotalSeconds:F1} s):"));
            PrintChecks(checks);
        }
        GpuDecodeBench? bench = null;
        if (!checkOnly)
        {
            bench = new GpuDecodeBench(kernels, new GpuDecodeBench.Options
            {
                Contexts = contexts, Batched = batched, Budget = budget, Repetitions = reps, OpsPerGraph = ops,
                Log = s => Console.WriteLine(s),
            });
            bench.Run();
            Console.WriteLine("\nspot checks at the benchmark's sizes:");
            PrintChecks(bench.SpotChecks);
            checks.AddRange(bench.SpotChecks);
            Console.WriteLine(string.Create(ci, $"\nper layer, Llama-3.1-8B heads (32 q / 8 kv / 128), bf16 KV, budget {budget}; floor = bytes ÷ {bench.CopyBandwidth / 1e12:F2} TB/s (device copy, this run); read floor = bytes ÷ {bench.ReadBandwidth / 1e12:F2} TB/s (read-only kernel, this run)"));
            Console.WriteLine("| context | batch | operation | µs | floor µs | × floor | read floor µs | × read floor | note |");
            Console.WriteLine("|---:|---:|---|---:|---:|---:|---:|---:|---|");
            foreach (var row in bench.Rows)
                Console.WriteLine(string.Create(ci, $"| {row.Context} | {row.Batch} | {row.Operation} | {row.Milliseconds * 1e3:F1} | {row.FloorMilliseconds * 1e3:F1} | {row.OverFloor:F2} | {row.ReadFloorMilliseconds * 1e3:F1} | {row.OverReadFloor:F2} | {row.Note} |"));
        }
        if (jsonPath != null) WriteJson(jsonPath, device, checks, bench);
        int failed = checks.Count(c => !c.Passed);
        if (failed > 0) Console.Error.WriteLine($"error: {failed} kernel check(s) failed.");
        return failed > 0 ? 2 : 0;
    }

    private static void PrintChecks(IEnumerable<GpuSelfCheck.Result> checks)
    {
        var ci = CultureInfo.InvariantCulture;
        Console.WriteLine("| check | error | threshold | result | detail |");
        Console.WriteLine("|---|---:|---:|---|---|");
        foreach (var c in checks)
            Console.WriteLine(string.Create(ci, $"| {c.Name} | {c.Error:G3} | {c.Threshold:G3} | {(c.Passed ? "pass" : "FAIL")} | {c.Detail} |"));
    }

    private static void WriteJson(string path, CudaDevice device, List<GpuSelfCheck.Result> checks, GpuDecodeBench? bench)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null) Directory.CreateDirectory(dir);
        using var f = File.Create(path);
        using var w = new Utf8JsonWriter(f, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("gpu", device.Name);
        w.WriteString("architecture", device.Architecture);
        w.WriteNumber("multiprocessors", device.Multiprocessors);
        if (bench != null)
        {
            w.WriteNumber("copy_bytes_per_second", bench.CopyBandwidth);
            w.WriteNumber("read_bytes_per_second", bench.ReadBandwidth);
        }
        w.WriteStartArray("checks");
        foreach (var c in checks)
        {
            w.WriteStartObject();
            w.WriteString("name", c.Name);
            w.WriteNumber("error", double.IsFinite(c.Error) ? c.Error : -1);
            w.WriteNumber("threshold", c.Threshold);
            w.WriteBoolean("passed", c.Passed);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("rows");
        foreach (var r in bench?.Rows ?? [])
        {
            w.WriteStartObject();
            w.WriteNumber("context", r.Context);
            w.WriteNumber("batch", r.Batch);
            w.WriteString("operation", r.Operation);
            w.WriteNumber("ms", r.Milliseconds);
            w.WriteNumber("floor_ms", r.FloorMilliseconds);
            w.WriteNumber("read_floor_ms", r.ReadFloorMilliseconds);
            w.WriteNumber("bytes", r.Bytes);
            w.WriteNumber("spread", r.Spread);
            w.WriteString("note", r.Note);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
