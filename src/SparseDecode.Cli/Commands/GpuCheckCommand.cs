using SparseDecode.Engine;
using SparseDecode.Backends;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`gpu-check`: the GPU model against the CPU engine on the same token ids, per model directory: max
/// |Δ log p| over prefill-chunk and graph-decode tokens with a pass/fail threshold (exit 2 on a failure).</summary>
internal static class GpuCheckCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model", "-m") { Description = "Model directories (repeatable). Default: the bundled model.", AllowMultipleArgumentsPerToken = true };
        var tokens = new Option<int>("--tokens") { Description = "Token ids scored per model (random, fixed seed).", DefaultValueFactory = _ => 96 };
        var cudaCores = new Option<bool>("--no-tensor-cores") { Description = "Matrix products of several rows on the CUDA cores too (f32 throughout)." };
        var methods = new Option<string>("--methods") { Description = "Methods also decoded on the GPU against the CPU (bf16 models), comma-separated; empty: none.", DefaultValueFactory = _ => "oracle,streaming,quest,tidal,lfps,prhs,hshare" };
        var budget = new Option<string>("--budget") { Description = "Budget of those policies.", DefaultValueFactory = _ => "16" };
        var precision = new Option<string>("--gpu-prefill", "--prefill-precision") { Description = "Operands of the prefill's tensor-core products: split (hi + lo bf16, f32-accurate) or bf16.", DefaultValueFactory = _ => "split" };
        var contractModel = new Option<string?>("--contract-model") { Description = "Also hold the engine contract on this model (allocated whole), e.g. one whose heads of 128 go through the tuned kernels, dense passes on the tensor cores among them; it is not compared with the CPU engine." };
        var cmd = new Command("gpu-check", "Check GPU log-probabilities against the CPU engine on the same tokens.") { models, tokens, cudaCores, methods, budget, precision, contractModel };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            var dirs = r.GetValue(models) is { Length: > 0 } m ? m : [Engine.ModelLocator.Resolve(null)];
            var specs = GpuStepCommand.ParseList(r.GetValue(methods)!, m => Selection.SelectorSpec.Parse(m, r.GetValue(budget)!, new Dictionary<string, string>()));
            var p = r.GetValue(precision)!.ToLowerInvariant() switch
            {
                "split" => ProductPrecision.Split,
                "bf16" => ProductPrecision.Bf16,
                var x => throw new ArgumentException($"--gpu-prefill takes split or bf16, not '{x}'."),
            };
            return Run(dirs, r.GetValue(tokens), r.GetValue(cudaCores), specs, p, r.GetValue(contractModel));
        }));
        return cmd;
    }

    private static int Run(string[] dirs, int tokens, bool noTensorCores, Selection.SelectorSpec[] specs, ProductPrecision prefillPrecision,
        string? contractModel)
    {
        var ci = CultureInfo.InvariantCulture;
        using var device = CudaDevice.Open();
        Console.WriteLine(string.Create(ci, $"GPU: {device.Name}, {device.Architecture}, {device.Multiprocessors} SMs, {device.TotalMemory / 1e9:F1} GB"));
        var sw = Stopwatch.StartNew();
        using var dk = new DecodeKernels(device);
        using var mk = new ModelKernels(device, noTensorCores ? GemvOptions.CudaCoresOnly : null);
        Console.WriteLine(string.Create(ci, $"kernels: {DecodeKernels.SourceFile} and {ModelKernels.SourceFile} {(dk.FromCache && mk.FromCache ? "from the disk cache" : "compiled by NVRTC")} in {sw.Elapsed.TotalMilliseconds:F0} ms"));
        if (!string.IsNullOrWhiteSpace(mk.CompileLog)) Console.WriteLine($"NVRTC log:\n{mk.CompileLog}");
        Console.WriteLine("| kernel | registers | local (spill) bytes | static shared bytes |");
        Console.WriteLine("|---|---:|---:|---:|");
        using (var prefillKernels = new PrefillAttentionKernels(device))
            foreach (var (name, regs, local, shared) in mk.Resources().Concat(prefillKernels.Resources()))
                Console.WriteLine($"| {name} | {regs} | {local} | {shared} |");
        var kernelChecks = ModelKernelCheck.Run(mk, Environment.TickCount);
        Console.WriteLine("\nmatrix-vector kernels against the float64 reference:");
        Console.WriteLine("| check | relative error | threshold | result |");
        Console.WriteLine("|---|---:|---:|---|");
        foreach (var c in kernelChecks)
            Console.WriteLine(string.Create(ci, $"| {c.Name} | {c.Error:G3} | {c.Threshold:G3} | {(c.Passed ? "pass" : "FAIL")} |"));
        Console.WriteLine(string.Create(ci, $"\nproducts of several rows on the {(noTensorCores ? "CUDA cores (f32)" : "tensor cores")}; prefill operands {prefillPrecision}"));
        var results = new List<GpuParityCheck.Result>();
        foreach (var d in dirs)
        {
            sw.Restart();
            var res = GpuParityCheck.Run(dk, mk, d, tokens, prefillPrecision: prefillPrecision);
            results.Add(res);
            Console.WriteLine(string.Create(ci, $"{d}: {sw.Elapsed.TotalSeconds:F1} s"));
        }
        Console.WriteLine($"\nGPU against the CPU engine on the same bf16 weights and a bf16 KV cache; pass: max |Δ log p| ≤ {GpuParityCheck.MaxThreshold.ToString(ci)} and mean ≤ {GpuParityCheck.MeanThreshold.ToString(ci)}, or where the CPU's own bf16-vs-f32 cache difference is larger, within it (max and mean)");
        Console.WriteLine("| model | stored as | tokens | max |Δ| prefill | max |Δ| graph decode | max |Δ| eager decode | max |Δ| same tokens by prefill | mean |Δ| | argmax agreement | CPU decode vs CPU prefill | CPU bf16 vs f32 cache (max / mean) | max |Δ| vs CPU on stored weights | result |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var x in results)
            Console.WriteLine(string.Create(ci, $"| {Path.GetFileName(Path.TrimEndingDirectorySeparator(x.Model))} | {x.WeightType} | {x.Tokens} | {x.MaxPrefillDelta:G3} | {x.MaxDecodeDelta:G3} | {x.MaxEagerDecodeDelta:G3} | {x.MaxLatePrefillDelta:G3} | {x.MeanDelta:G3} | {x.ArgmaxAgreements}/{x.ArgmaxCompared} | {x.CpuSelfSpread:G3} | {x.CpuCacheSpread:G3} / {x.CpuCacheMeanSpread:G3} | {x.MaxDeltaOriginalWeights:G3} | {(x.Passed ? "pass" : "FAIL")} |"));
        var sparse = new List<GpuParityCheck.SparseResult>();
        foreach (var d in results.Where(x => x.WeightType == "bf16").Select(x => x.Model))
            foreach (var spec in specs) sparse.Add(GpuParityCheck.RunSparse(dk, mk, d, spec));
        if (sparse.Count > 0)
        {
            Console.WriteLine(string.Create(ci, $"\nsparse methods on the GPU against the same method on the CPU, teacher-forced decode of the second half; pass: max |Δ log p| ≤ {GpuParityCheck.SparseMaxThreshold} and mean ≤ {GpuParityCheck.SparseMeanThreshold}; overlap: |CPU ∩ GPU| / max(|CPU|, |GPU|) of the plan's index lists after the last step (mean / min)"));
            Console.WriteLine("| model | method | tokens | max |Δ| | mean |Δ| | CPU policy vs CPU dense (max) | index overlap mean / min | keys attended per step CPU / GPU | result |");
            Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---|");
            foreach (var x in sparse)
                Console.WriteLine(string.Create(ci, $"| {Path.GetFileName(Path.TrimEndingDirectorySeparator(x.Model))} | {x.Method} | {x.Tokens} | {x.MaxDelta:G3} | {x.MeanDelta:G3} | {x.MaxFromDense:G3} | {x.MeanOverlap:F4} / {x.MinOverlap:F4} | {x.CpuKeysAttended:F0} / {x.GpuKeysAttended:F0} | {(x.Passed ? "pass" : "FAIL")} |"));
            foreach (var x in sparse.Where(x => x.MinOverlap < 1))
                Console.WriteLine(string.Create(ci, $"least overlap, {x.Method}: {x.WorstList}"));
        }
        var contract = new List<EngineContractCheck.Check>();
        // the engine contract at the GPU's tolerances, each check's name marked with what the engine runs
        static IEnumerable<EngineContractCheck.Check> Holds(Engine.IInferenceEngine e, string how = "") =>
            EngineContractCheck.Run(e, EngineContractCheck.GpuBatchTolerance, EngineContractCheck.GpuSparseBatchTolerance)
                .Select(c => how == "" ? c : c with { Name = c.Name + ", " + how });
        static Engine.EngineOptions Contract() => new() { Device = "cuda", Capacity = 128, Sequences = EngineContractCheck.Slots };
        if (dirs.Length > 0)
        {
            using var engine = BackendRegistry.Load(dirs[0], Contract());
            contract.AddRange(Holds(engine));
            // the same with each part of a step exactly its sequences' rows, beside the padded default
            ((GpuEngine)engine).PadParts = false;
            contract.AddRange(Holds(engine, "parts not padded").Take(2));
            // the KV cache mapped per sequence from a page pool: the same contract, the same logits as allocated whole
            using var onDemand = BackendRegistry.Load(dirs[0], Contract() with { KvOnDemand = true });
            contract.AddRange(Holds(onDemand, "KV cache on demand"));
            ((GpuEngine)engine).PadParts = true;
            contract.Add(EngineContractCheck.SameLogits(engine, onDemand, "KV cache on demand = allocated whole (dense, quest, tidal, dense forked into quest)"));
            contract.Add(EngineContractCheck.PoolReturns(onDemand));
            // products in bf16 (`--gpu-prefill bf16 --gpu-decode bf16`): a row's arithmetic is the same at any batch size
            using (var bf16 = BackendRegistry.Load(dirs[0], Contract() with { PrefillPrecision = ProductPrecision.Bf16, DecodePrecision = ProductPrecision.Bf16 }))
                contract.AddRange(Holds(bf16, "products in bf16"));
            // a long context, so that a copy of a prefix shares whole pages of its source
            if (Engine.ModelLocator.Resolve(null) is var bundled && Path.GetFullPath(dirs[0]) == Path.GetFullPath(bundled))
            {
                using var longContext = BackendRegistry.Load(dirs[0], new Engine.EngineOptions { Device = "cuda", Capacity = 32768, Sequences = 4, KvOnDemand = true });
                contract.Add(EngineContractCheck.SharedPrefix(longContext, 18432, 2048, EngineContractCheck.GpuBatchTolerance) with { Name = "KV cache on demand: " + "a copy of a prefix shares its source's pages (18432 positions)" });
            }
            PrintContract(dirs[0], contract);
        }
        if (contractModel is not null)
        {
            using var engine = BackendRegistry.Load(contractModel, Contract());
            var more = Holds(engine).ToList();
            PrintContract(contractModel, more);
            contract.AddRange(more);
        }
        var draws = SamplingCheck.Run(device, Environment.TickCount);
        Console.WriteLine("\nnext tokens drawn on the GPU against the host sampler with the same uniform numbers (10 settings: greedy, temperature, top-k, top-p, both, k past the vocabulary, a nucleus of one; 3 rows of NaN, +inf, all -inf logits, which must come back undrawn); at a boundary: the host draws that token for a number or top-p within 1e-5");
        Console.WriteLine("| logits | vocabulary | draws | equal | at a boundary | other | result |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---|");
        foreach (var x in draws) Console.WriteLine($"| {x.Case} | {x.Vocab} | {x.Draws} | {x.Equal} | {x.AtBoundary} | {x.Differ} | {(x.Passed ? "pass" : "FAIL")} |");
        foreach (var x in draws.Where(x => x.FirstDifference.Length > 0)) Console.WriteLine($"first difference, {x.Case} logits of {x.Vocab}: {x.FirstDifference}");
        Console.WriteLine("\ndrawing every row's next token: on the GPU (token ids copied back) against copying the logits to the host and drawing there, ms per step, mean of 20 (spread: (slowest - fastest) / mean)");
        Console.WriteLine("| rows | vocabulary | setting | on the GPU | spread | logits to the host + host draw | spread |");
        Console.WriteLine("|---:|---:|---|---:|---:|---:|---:|");
        foreach (int rows in (int[])[8, 64])
            foreach (int vocab in (int[])[8192, 128256])
                foreach (var (name, o) in new[] { ("greedy", SamplingOptions.Greedy), ("T 0.8, top-p 0.95", new SamplingOptions(0.8f, 0, 0.95f)), ("T 0.8, top-k 50", new SamplingOptions(0.8f, 50)) })
                {
                    var (gpu, gpuSpread, cpu, cpuSpread) = SamplingCheck.Time(device, rows, vocab, o);
                    Console.WriteLine(string.Create(ci, $"| {rows} | {vocab} | {name} | {gpu:F3} | {gpuSpread:P0} | {cpu:F3} | {cpuSpread:P0} |"));
                }
        int failed = results.Count(x => !x.Passed) + sparse.Count(x => !x.Passed) + contract.Count(c => !c.Passed) + draws.Count(x => !x.Passed), kernelsFailed = kernelChecks.Count(c => !c.Passed);
        if (kernelsFailed > 0) Console.Error.WriteLine($"error: {kernelsFailed} kernel check(s) failed.");
        if (failed > 0) Console.Error.WriteLine($"error: {failed} check(s) of the models, the engine contract or the draws failed (FAIL above).");
        return failed + kernelsFailed > 0 ? 2 : 0;
    }

    private static void PrintContract(string model, IReadOnlyList<EngineContractCheck.Check> contract)
    {
        Console.WriteLine($"\nthe GPU engine's contract on {Path.GetFileName(Path.TrimEndingDirectorySeparator(model))}: largest logit difference");
        Console.WriteLine("| promise | max |Δ logit| | allowed | result |");
        Console.WriteLine("|---|---:|---:|---|");
        foreach (var c in contract)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {c.Name} | {c.Worst:G3} | {c.Tolerance:G3} | {(c.Passed ? "pass" : "FAIL")} |"));
    }
}
