using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`gpu-prefill`: prefill of a real model shape (random weights) through the session's own prefill
/// (<see cref="GpuDecodeSession.Prefill"/>), timed at each context per precision, beside the tensor cores' FLOP
/// floor; first a cross-check of the chunked prefill against decode steps of 8 rows on the same weights.</summary>
internal static class GpuPrefillCommand
{
    public static Command Create()
    {
        var shape = new Option<string>("--shape") { Description = "llama-3.1-8b or llama-3.1-70b-16l.", DefaultValueFactory = _ => "llama-3.1-8b" };
        var contexts = new Option<string>("--contexts") { Description = "Prompt lengths, comma-separated.", DefaultValueFactory = _ => "8192,32768,131072" };
        var precisions = new Option<string>("--gpu-prefill", "--precision") { Description = "Prefill operands to time: bf16, split or both.", DefaultValueFactory = _ => "both" };
        var peak = new Option<double>("--peak-tflops") { Description = "Dense bf16 tensor-core peak for the FLOP floor (H200/H100 SXM: 989).", DefaultValueFactory = _ => 989 };
        var check = new Option<int>("--check-tokens") { Description = "Tokens of the cross-check against 8-row decode steps (0: none).", DefaultValueFactory = _ => 200 };
        var cmd = new Command("gpu-prefill", "Time the GPU prefill of a real model shape (random weights) at long contexts.") { shape, contexts, precisions, peak, check };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            var p = r.GetValue(precisions)!.ToLowerInvariant() switch
            {
                "both" => new[] { ProductPrecision.Bf16, ProductPrecision.Split },
                "bf16" => [ProductPrecision.Bf16],
                "split" => [ProductPrecision.Split],
                var x => throw new ArgumentException($"--gpu-prefill takes bf16, split or both, not '{x}'."),
            };
            return Run(GpuShapes.Get(r.GetValue(shape)!), GpuStepCommand.ParseList(r.GetValue(contexts)!, x => int.Parse(x, CultureInfo.InvariantCulture)),
                p, r.GetValue(peak), r.GetValue(check));
        }));
        return cmd;
    }

    private static int Run(ModelConfig c, int[] contexts, ProductPrecision[] precisions, double peakTflops, int checkTokens)
    {
        var ci = CultureInfo.InvariantCulture;
        if (contexts.Any(n => n < 1 || n > c.MaxPositions)) throw new ArgumentException($"Contexts must be 1 to {c.MaxPositions} tokens.");
        using var device = CudaDevice.Open();
        Console.WriteLine(string.Create(ci, $"GPU: {device.Name}, {device.Architecture}, {device.Multiprocessors} SMs, {device.TotalMemory / 1e9:F1} GB"));
        using var dk = new DecodeKernels(device);
        using var mk = new ModelKernels(device);
        using var s = new CudaStream(device);
        using var random = new DiagnosticKernels(device);
        using var weights = RandomDeviceData.Weights(random, mk, c, s);
        // the engine users get: its model's prefill is what GpuDecodeSession.Prefill runs
        using var engine = new GpuEngine(device, weights, contexts.Append(checkTokens).Max() + 1, slots: 1, ownsDevice: false);
        var model = engine.Model;
        var rng = new Random(5);
        int failed = 0;
        if (checkTokens > 0)
        {
            var tokens = Enumerable.Range(0, checkTokens).Select(_ => rng.Next(c.VocabSize)).ToArray();
            var reference = StepLogits(model, tokens, s);
            using var small = new GpuPrefill(model, chunkTokens: 64);
            Console.WriteLine($"\ncross-check: last-token log-probabilities of {checkTokens} tokens, chunked prefill (chunks of {small.ChunkTokens}) against decode steps of {ModelKernels.MaxRows} rows (f32 activations)");
            Console.WriteLine("| precision | max |Δ log p| | result |");
            Console.WriteLine("|---|---:|---|");
            foreach (var p in precisions)
            {
                small.Precision = p;
                using var cache = new GpuKvCache(device, c, 1, checkTokens);
                var logits = new float[c.VocabSize];
                small.Run(cache, 0, tokens, 0, logits, null, s);
                double max = MaxLogProbDelta(reference, logits);
                bool pass = max <= (p == ProductPrecision.Split ? 0.05 : 0.5);
                failed += pass ? 0 : 1;
                Console.WriteLine(string.Create(ci, $"| {p} | {max:G3} | {(pass ? "pass" : "FAIL")} |"));
            }
        }
        long matrixParams = (long)c.NumLayers * ((long)c.HiddenSize * (c.QDim + 2 * c.KvDim) + (long)c.QDim * c.HiddenSize + 3L * c.HiddenSize * c.IntermediateSize);
        Console.WriteLine(string.Create(ci, $"\nprefill of {c.ArchitectureName} (random bf16 weights) through GpuDecodeSession.Prefill; FLOPs = 2·{matrixParams / 1e9:F2} G matrix parameters per token + causal attention 2·d·T(T+1)·heads·layers; floor = FLOPs ÷ {peakTflops} TFLOP/s"));
        Console.WriteLine("| context | precision | chunk | seconds | tokens/s | TFLOP/s | floor s | × floor |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|---:|");
        bool warm = false;
        foreach (int n in contexts)
            foreach (var p in precisions)
            {
                var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(c.VocabSize)).ToArray();
                if (!warm)
                {
                    // cuBLAS's first products and the kernels' first launches are not what is timed
                    using var w = engine.CreateSequence(Math.Min(n, 4096));
                    w.Prefill(tokens.AsSpan(0, Math.Min(n, 4096)));
                    warm = true;
                }
                model.Prefill!.Precision = p;
                using var session = engine.CreateSequence(n);
                long t0 = Stopwatch.GetTimestamp();
                session.Prefill(tokens);
                double sec = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                double flops = 2.0 * matrixParams * n + 2.0 * c.HeadDim * n * (n + 1.0) * c.NumHeads * c.NumLayers;
                double floor = flops / (peakTflops * 1e12);
                Console.WriteLine(string.Create(ci, $"| {n} | {p} | {model.Prefill.ChunkTokens} | {sec:F3} | {n / sec:F0} | {flops / sec / 1e12:F1} | {floor:F3} | {sec / floor:F2} |"));
            }
        return failed > 0 ? 2 : 0;
    }

    /// <summary>The last token's logits through decode steps of up to 8 rows (the model step, f32 activations).</summary>
    private static float[] StepLogits(GpuModel model, int[] tokens, CudaStream s)
    {
        int v = model.Config.VocabSize, rows = ModelKernels.MaxRows;
        using var cache = new GpuKvCache(model.Device, model.Config, 1, tokens.Length);
        var logits = new float[rows * v];
        var slots = new int[rows];
        var positions = new int[rows];
        int last = 0;
        for (int c0 = 0; c0 < tokens.Length; c0 += rows)
        {
            int n = Math.Min(rows, tokens.Length - c0);
            for (int r = 0; r < n; r++) positions[r] = c0 + r;
            model.Forward(cache, slots.AsSpan(0, n), tokens.AsSpan(c0, n), positions.AsSpan(0, n), logits, s);
            last = n - 1;
        }
        return logits.AsSpan(last * v, v).ToArray();
    }

    private static double MaxLogProbDelta(float[] a, float[] b)
    {
        // log p(t) = logit(t) − logsumexp: the normaliser once per side
        double na = a[0] - Logits.LogSoftmaxAt(a, 0), nb = b[0] - Logits.LogSoftmaxAt(b, 0), max = 0;
        for (int t = 0; t < a.Length; t++)
        {
            double d = Math.Abs((a[t] - na) - (b[t] - nb));
            max = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(max, d);
        }
        return max;
    }
}
