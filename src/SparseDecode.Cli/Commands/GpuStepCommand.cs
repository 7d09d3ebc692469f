using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`gpu-step`: end-to-end decode steps of a real shape with random weights, per method, beside the floor.</summary>
internal static class GpuStepCommand
{
    public static Command Create()
    {
        var shape = new Option<string>("--shape") { Description = "llama-3.1-8b or llama-3.1-70b-16l (70B layer shape, 16 layers).", DefaultValueFactory = _ => "llama-3.1-8b" };
        var contexts = new Option<string>("--contexts") { Description = "Context lengths (batch 1), comma-separated.", DefaultValueFactory = _ => "8192,32768,131072" };
        var batched = new Option<string>("--batched") { Description = "Batched cases CONTEXTxBATCH, comma-separated (empty: none).", DefaultValueFactory = _ => "32768x8" };
        var methods = new Option<string>("--methods") { Description = "Methods written as device plans, comma-separated; parameters after a colon, ';'-separated (lfps:granularity=kv;radius=0).", DefaultValueFactory = _ => "dense,tidal,lfps,quest,oracle,streaming" };
        var budget = new Option<int>("--budget") { Description = "Keys attended per KV head by the sparse methods.", DefaultValueFactory = _ => 2048 };
        var reps = new Option<int>("--reps") { Description = "Timed graph replays (median reported).", DefaultValueFactory = _ => 20 };
        var json = new Option<string?>("--json") { Description = "Write every row to this JSON file." };
        var noClusters = new Option<bool>("--no-clusters") { Description = "Run every per-row top-k in one block (no thread-block clusters), for comparison." };
        var noPdl = new Option<bool>("--no-pdl") { Description = "Launch every kernel only after the one ahead of it has finished (no programmatic dependent launch), for comparison." };
        var cmd = new Command("gpu-step", "Time whole decode steps of a real model shape (random weights) per method on the GPU.")
        {
            shape, contexts, batched, methods, budget, reps, json, noClusters, noPdl,
        };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            var options = new GpuStepBench.Options
            {
                Shape = GpuShapes.Get(r.GetValue(shape)!),
                Contexts = ParseList(r.GetValue(contexts)!, x => int.Parse(x, CultureInfo.InvariantCulture)),
                Batched = ParseList(r.GetValue(batched)!, ParseBatch),
                Methods = ParseList(r.GetValue(methods)!, ParseMethod),
                Budget = r.GetValue(budget),
                Repetitions = r.GetValue(reps),
                Log = s => Console.WriteLine(s),
            };
            return Run(options, r.GetValue(json), !r.GetValue(noClusters), !r.GetValue(noPdl));
        }));
        return cmd;
    }

    public static T[] ParseList<T>(string s, Func<string, T> parse) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(parse).ToArray();

    public static (int, int) ParseBatch(string x)
    {
        var p = x.Split('x');
        if (p.Length != 2 || !int.TryParse(p[0], CultureInfo.InvariantCulture, out int n) || !int.TryParse(p[1], CultureInfo.InvariantCulture, out int b))
            throw new ArgumentException($"--batched takes CONTEXTxBATCH, got '{x}'.");
        return (n, b);
    }

    /// <summary>A method name, optionally with parameters after a colon separated by ';' (lfps:granularity=kv;radius=0).</summary>
    public static string ParseMethod(string x)
    {
        _ = Selection.SelectorSpec.Parse(x.Split(':', 2)[0], "1", new Dictionary<string, string>());
        return x;
    }

    private static int Run(GpuStepBench.Options options, string? jsonPath, bool clusters, bool programmaticLaunch)
    {
        var ci = CultureInfo.InvariantCulture;
        using var device = CudaDevice.Open();
        device.ProgrammaticLaunch = programmaticLaunch;
        Console.WriteLine(string.Create(ci, $"GPU: {device.Name}, {device.Architecture}, {device.Multiprocessors} SMs, {device.TotalMemory / 1e9:F1} GB; programmatic dependent launch {(device.ProgrammaticLaunch ? "on" : "off")}, top-k clusters {(clusters ? "on" : "off")}"));
        using var dk = new DecodeKernels(device) { Clusters = clusters };
        using var mk = new ModelKernels(device);
        var bench = new GpuStepBench(dk, mk, options);
        bench.Run();
        Console.WriteLine(string.Create(ci, $"\nwhole decode step, {options.Shape.ArchitectureName} random weights, bf16, budget {options.Budget}; floor = (weights {bench.WeightBytes / 1e9:F2} GB + KV and selection reads) ÷ {bench.ReadBandwidth / 1e12:F2} TB/s (read-only kernel, this run)"));
        Console.WriteLine("| context | batch | method | step ms | floor ms | × floor | tokens/s | note |");
        Console.WriteLine("|---:|---:|---|---:|---:|---:|---:|---|");
        foreach (var x in bench.Rows)
            Console.WriteLine(string.Create(ci, $"| {x.Context} | {x.Batch} | {x.Method} | {x.Milliseconds:F3} | {x.FloorMilliseconds:F3} | {x.OverFloor:F2} | {x.TokensPerSecond:F1} | {x.Note} |"));
        if (jsonPath != null)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(jsonPath));
            if (dir != null) Directory.CreateDirectory(dir);
            var report = new GpuStepReport(device.Name, options.Shape.ArchitectureName, bench.ReadBandwidth, bench.WeightBytes, bench.Rows);
            File.WriteAllText(jsonPath, JsonSerializer.Serialize(report, GpuStepJson.Default.GpuStepReport));
        }
        return 0;
    }
}
