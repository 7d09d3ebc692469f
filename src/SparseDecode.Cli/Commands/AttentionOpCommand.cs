using System.CommandLine;
using System.Globalization;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Diagnostics;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`attention-op`: the attention operator per layer (selection + sparse attention vs dense attention), in
/// steady state, on the CPU (<see cref="AttentionOperatorBench"/>; --threads 1 for one core) or the GPU
/// (<see cref="GpuAttentionOpBench"/>), at model shapes with random data.</summary>
internal static class AttentionOpCommand
{
    public static Command Create()
    {
        var device = CommonOptions.Device();
        var shapes = new Option<string>("--shapes") { Description = "Shapes, comma-separated: llama-3.1-8b, llama-3.1-70b-16l, 'bundled' (the bundled model's config) or a model directory.", DefaultValueFactory = _ => "llama-3.1-8b,bundled" };
        var contexts = new Option<string>("--contexts") { Description = "Context lengths, comma-separated.", DefaultValueFactory = _ => "8192,32768,131072" };
        var budgets = new Option<string>("--budgets") { Description = "Budgets in percent of the context, comma-separated.", DefaultValueFactory = _ => "1,2,5,10" };
        var methods = new Option<string>("--methods") { Description = "Methods, comma-separated (dense is the baseline; oracle is exact top-k).", DefaultValueFactory = _ => "dense,oracle,tidal,lfps,prhs,quest,streaming" };
        var warmup = new Option<int>("--warmup") { Description = "Steps run before timing (the first step of a sequence is never timed).", DefaultValueFactory = _ => 1 };
        var steps = new Option<int>("--steps") { Description = "Timed steps (CPU: mean; GPU: median); 16 covers PrHS's longest sharing block.", DefaultValueFactory = _ => 16 };
        var json = new Option<string?>("--json") { Description = "Write every row to this JSON file." };
        var cmd = new Command("attention-op", "Time the attention operator per layer (each method's selection + sparse attention vs dense attention) in steady state.")
        {
            device, shapes, contexts, budgets, methods, warmup, steps, json,
        };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            var configs = GpuStepCommand.ParseList(r.GetValue(shapes)!, Shape);
            int[] ns = GpuStepCommand.ParseList(r.GetValue(contexts)!, x => int.Parse(x, CultureInfo.InvariantCulture));
            double[] shares = GpuStepCommand.ParseList(r.GetValue(budgets)!, x => double.Parse(x, CultureInfo.InvariantCulture) / 100);
            string[] names = GpuStepCommand.ParseList(r.GetValue(methods)!, GpuStepCommand.ParseMethod);
            bool gpu = CommonOptions.ParseDevice(r.GetValue(device)!) == "cuda";
            var rows = new List<AttentionOperatorBench.Row>();
            AttentionOperatorBench.Options For(ModelConfig c) => new()
            {
                Shape = c, Contexts = ns, Budgets = shares, Methods = names, WarmupSteps = r.GetValue(warmup), Steps = r.GetValue(steps),
                Log = s => Console.WriteLine(s),
            };
            string where;
            if (gpu)
            {
                using var dev = CudaDevice.Open();
                where = $"GPU {dev.Name}";
                using var dk = new DecodeKernels(dev);
                using var mk = new ModelKernels(dev);
                foreach (var c in configs)
                {
                    var bench = new GpuAttentionOpBench(dk, mk, For(c));
                    bench.Run();
                    rows.AddRange(bench.Rows);
                }
            }
            else
            {
                where = $"CPU, {WorkerPool.Shared.Threads} thread(s)";
                foreach (var c in configs)
                {
                    var bench = new AttentionOperatorBench(For(c));
                    bench.Run();
                    rows.AddRange(bench.Rows);
                }
            }
            Console.WriteLine();
            Console.WriteLine(AttentionOperatorTable.Markdown(rows, where));
            if (r.GetValue(json) is string path)
            {
                var dir = Path.GetDirectoryName(Path.GetFullPath(path));
                if (dir != null) Directory.CreateDirectory(dir);
                File.WriteAllText(path, AttentionOperatorTable.Json(rows, where));
            }
            return 0;
        }));
        return cmd;
    }

    private static ModelConfig Shape(string name) =>
        name.Equals("bundled", StringComparison.OrdinalIgnoreCase) ? ModelConfig.Load(ModelLocator.Resolve(null))
        : Directory.Exists(name) ? ModelConfig.Load(name)
        : GpuShapes.Get(name);
}
