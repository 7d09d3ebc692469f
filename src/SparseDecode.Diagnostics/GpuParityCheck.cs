using System.Numerics.Tensors;
using SparseDecode.Cuda;
using SparseDecode.Engine;
using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>The GPU model against the CPU engine on the same token ids and the same weights: per-token
/// log-probabilities of the first half through prefill chunks, of the second half through decode steps (graph
/// replays, and once more launched kernel by kernel), and of all tokens through prefill chunks. The CPU runs with a bf16 KV cache (the GPU's) and, for f32
/// and f16 checkpoints, on a copy whose matrices are rounded to bf16 as the upload rounds them; what remains is f32
/// summation order. The difference to the CPU engine on the original f32/f16 weights is reported beside it.</summary>
internal static class GpuParityCheck
{
    /// <summary>Pass thresholds of |Δ log p| against the CPU engine on the same bf16 weights: the largest and the
    /// mean. Why not tighter: with a bf16 cache, an f32 rounding difference in a key or value can flip its bf16
    /// rounding (one bf16 step is 2^-8 relative), which moves log p of unlikely tokens of a trained model by up to a
    /// few 1e-2. Two yardsticks are reported beside the result: the CPU engine's own decode path against its prefill
    /// path, and the CPU engine with a bf16 cache against an f32 cache (what storing the cache in bf16 moves).
    /// A model more sensitive to that rounding than the thresholds allow (the 32K bundled model: 0.076 on the CPU
    /// alone) is held to the second yardstick instead: the two engines round the cache from f32 values a few ulps
    /// apart, so they may disagree by as much as bf16 storage moves either of them, and no more.</summary>
    public const double MaxThreshold = 0.05;
    public const double MeanThreshold = 5e-3;

    public sealed record Result(string Model, string WeightType, int Tokens, double MaxPrefillDelta, double MaxDecodeDelta,
        double MaxEagerDecodeDelta, double MaxLatePrefillDelta, double MeanDelta, double MaxDeltaOriginalWeights, double CpuSelfSpread, double CpuCacheSpread, double CpuCacheMeanSpread, int ArgmaxAgreements, int ArgmaxCompared)
    {
        // Math.Max propagates NaN (Enumerable.Max would skip it and let a NaN column pass)
        public double MaxDelta => Math.Max(Math.Max(MaxPrefillDelta, MaxDecodeDelta), Math.Max(MaxEagerDecodeDelta, MaxLatePrefillDelta));
        public double MaxAllowed => Math.Max(MaxThreshold, CpuCacheSpread);
        public double MeanAllowed => Math.Max(MeanThreshold, CpuCacheMeanSpread);
        public bool Passed => double.IsFinite(MaxDelta) && MaxDelta <= MaxAllowed && MeanDelta <= MeanAllowed;
    }

    public static Result Run(DecodeKernels dk, ModelKernels mk, string directory, int tokenCount = 96, int seed = 1234,
        ProductPrecision prefillPrecision = ProductPrecision.Split)
    {
        var config = ModelConfig.Load(directory);
        int n = Math.Min(tokenCount, config.MaxPositions);
        var rng = new Random(seed);
        var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();

        DType type;
        double[] original;
        using (var cpu = Transformer.Load(directory))
        {
            type = cpu.WeightType;
            original = Scorer.TokenLogprobs(new CpuEngine(cpu, DType.BF16), tokens);
        }
        string? copy = null;
        try
        {
            double[] reference = original;
            int[] argmax;
            double selfSpread, cacheSpread, cacheMeanSpread;
            if (type != DType.BF16)
            {
                copy = Path.Combine(Path.GetTempPath(), $"sparsedecode-bf16-{Environment.ProcessId}-{Guid.NewGuid():N}");
                Bf16CheckpointCopy.Write(directory, copy);
            }
            using (var cpu = Transformer.Load(copy ?? directory))
            {
                if (copy != null) reference = Scorer.TokenLogprobs(new CpuEngine(cpu, DType.BF16), tokens);
                argmax = CpuArgmax(cpu, tokens);
                selfSpread = CpuDecodeSpread(cpu, tokens, n / 2, reference);
                var f32Cache = Scorer.TokenLogprobs(new CpuEngine(cpu, DType.F32), tokens);
                var cacheDeltas = f32Cache.Select((v, i) => Delta(v, reference[i])).ToArray();
                cacheSpread = cacheDeltas.Max();
                cacheMeanSpread = cacheDeltas.Average();
            }

            using var store = WeightStore.Open(directory);
            using var weights = GpuWeights.Upload(dk.Device, store, config);
            using var model = new GpuEngine(dk.Device, weights, n, ownsDevice: false);
            if (model.Model.Prefill is { } prefill) prefill.Precision = prefillPrecision;
            int half = n / 2;
            var graph = Score(model, tokens, half, useGraph: true, argmax, out int agree, out int compared);
            var eager = Score(model, tokens, half, useGraph: false, argmax, out _, out _);
            var prefillAll = Score(model, tokens, n, useGraph: false, argmax, out _, out _);
            double maxPrefill = 0, maxDecode = 0, maxEager = 0, maxLate = 0, sum = 0, maxOriginal = 0;
            for (int i = 0; i < n - 1; i++)
            {
                double d = Delta(graph[i], reference[i]);
                if (i < half) maxPrefill = Math.Max(maxPrefill, d);
                else
                {
                    maxDecode = Math.Max(maxDecode, d);
                    maxEager = Math.Max(maxEager, Delta(eager[i], reference[i]));
                    maxLate = Math.Max(maxLate, Delta(prefillAll[i], reference[i]));
                }
                maxOriginal = Math.Max(maxOriginal, Delta(graph[i], original[i]));
                sum += d;
            }
            return new Result(directory, type.Name(), n, maxPrefill, maxDecode, maxEager, maxLate, sum / (n - 1), maxOriginal, selfSpread, cacheSpread, cacheMeanSpread, agree, compared);
        }
        finally
        {
            if (copy != null && Directory.Exists(copy)) Directory.Delete(copy, recursive: true);
        }
    }

    private static double Delta(double a, double b)
    {
        double d = Math.Abs(a - b);
        return double.IsNaN(d) ? double.PositiveInfinity : d;
    }

    /// <summary>The GPU's log p(token i+1 | ..i): tokens before `half` through prefill chunks, the rest through
    /// decode steps; counts how often its argmax equals the CPU's.</summary>
    private static double[] Score(GpuEngine model, int[] tokens, int half, bool useGraph, int[] cpuArgmax, out int agree, out int compared)
    {
        int n = tokens.Length;
        var lp = new double[n - 1];
        int a = 0, c = 0;
        using var session = (GpuDecodeSession)model.CreateSequence(n);
        session.UseGraph = useGraph;
        void Take(int i, ReadOnlySpan<float> logits)
        {
            if (i + 1 < n) lp[i] = Logits.LogSoftmaxAt(logits, tokens[i + 1]);
            c++;
            if (TensorPrimitives.IndexOfMax(logits) == cpuArgmax[i]) a++;
        }
        session.Prefill(tokens.AsSpan(0, half), Take);
        for (int i = half; i < n - 1; i++)
        {
            session.Decode(tokens[i]);
            Take(i, session.Logits);
        }
        agree = a;
        compared = c;
        return lp;
    }

    /// <summary>The CPU engine's own max |Δ log p| between its decode path (tokens from `half` on, one step each)
    /// and its prefill path (`reference`): the yardstick of what rounding alone moves.</summary>
    private static double CpuDecodeSpread(Transformer cpu, int[] tokens, int half, double[] reference)
    {
        using var cache = cpu.CreateCache(tokens.Length, DType.BF16);
        var ws = new DecodeWorkspace(cpu, cache, Selection.SelectionGranularity.QueryHead);
        cpu.Prefill(tokens.AsSpan(0, half), cache, ws.Logits);
        double max = Delta(Logits.LogSoftmaxAt(ws.Logits, tokens[half]), reference[half - 1]);
        for (int i = half; i < tokens.Length - 1; i++)
        {
            cpu.Decode(tokens[i], cache, ws);
            max = Math.Max(max, Delta(Logits.LogSoftmaxAt(ws.Logits, tokens[i + 1]), reference[i]));
        }
        return max;
    }

    /// <summary>The CPU engine's greedy choice after each token (argmax of its logits).</summary>
    private static int[] CpuArgmax(Transformer cpu, int[] tokens)
    {
        int v = cpu.Config.VocabSize;
        using var cache = cpu.CreateCache(tokens.Length, DType.BF16);
        var all = new float[tokens.Length * v];
        cpu.Prefill(tokens, cache, default, all);
        return Enumerable.Range(0, tokens.Length).Select(i => TensorPrimitives.IndexOfMax(all.AsSpan(i * v, v))).ToArray();
    }

    /// <summary>A method's plan decoding on the GPU against the same plan on the CPU: the first half of the
    /// tokens prefilled densely, the second half decoded one step at a time through the plan (teacher-forced);
    /// max and mean |Δ log p| over the decoded tokens, beside how far the policy moves the CPU from dense (so a
    /// sparse selection is really exercised). Near-equal scores can make the two pick different keys, so this
    /// compares policies, not bits. bf16 checkpoints only (the CPU reads the same weights).</summary>
    public sealed record SparseResult(string Model, string Method, int Tokens, double MaxDelta, double MeanDelta, double MaxFromDense)
    {
        /// <summary>Device plans: |CPU ∩ GPU| / max(|CPU|, |GPU|) of every index list of the plan's state after the
        /// last step, mean and minimum over lists, layers and heads. Below 1 only where
        /// near-equal scores are picked differently (the two engines round differently).</summary>
        public double MeanOverlap { get; init; } = double.NaN;
        public double MinOverlap { get; init; } = double.NaN;
        /// <summary>Keys attended per decode step, summed over layers and query heads: the CPU's observer against
        /// what the GPU sequence reads back from its plan (what eval's "keys read" reports on the GPU).</summary>
        public double CpuKeysAttended { get; init; } = double.NaN;
        public double GpuKeysAttended { get; init; } = double.NaN;
        /// <summary>The list of least overlap: buffer, layer, head, and both sizes.</summary>
        public string WorstList { get; init; } = "";
        /// <summary>Loose on purpose (different picks among near-equal scores are legitimate), tight enough that a
        /// wrong list, a wrong kernel or a stale page summary shows: those move log p by about MaxFromDense.</summary>
        public bool Passed => double.IsFinite(MaxDelta) && MaxDelta <= SparseMaxThreshold && MeanDelta <= SparseMeanThreshold;
    }

    public const double SparseMaxThreshold = 0.25;
    public const double SparseMeanThreshold = 0.02;

    public static SparseResult RunSparse(DecodeKernels dk, ModelKernels mk, string directory, Selection.SelectorSpec spec, int tokenCount = 192, int seed = 99)
    {
        var config = ModelConfig.Load(directory);
        int n = Math.Min(tokenCount, config.MaxPositions), half = n / 2;
        var rng = new Random(seed);
        var tokens = Enumerable.Range(0, n).Select(_ => rng.Next(config.VocabSize)).ToArray();
        var cpuLp = new double[n - 1];
        double[] dense;
        var plan = spec.CreatePlan(config, n);
        var cpuPlan = new SpanPlanOps(plan);
        var observer = new Evaluation.SparsityObserver();
        using (var cpu = Transformer.Load(directory))
        {
            if (cpu.WeightType != DType.BF16) throw new ArgumentException($"{directory}: the sparse GPU check takes bf16 checkpoints.");
            dense = Scorer.TokenLogprobs(new CpuEngine(cpu, DType.BF16), tokens);
            using var cache = cpu.CreateCache(n, DType.BF16);
            var ws = new DecodeWorkspace(cpu, cache, plan.Granularity);
            cpu.Prefill(tokens.AsSpan(0, half), cache, ws.Logits);
            cpuLp[half - 1] = Logits.LogSoftmaxAt(ws.Logits, tokens[half]);
            for (int i = half; i < n - 1; i++)
            {
                cpu.Decode(tokens[i], cache, ws, cpuPlan, observer);
                cpuLp[i] = Logits.LogSoftmaxAt(ws.Logits, tokens[i + 1]);
            }
        }
        using var store = WeightStore.Open(directory);
        using var weights = GpuWeights.Upload(dk.Device, store, config);
        using var engine = new GpuEngine(dk.Device, weights, n, ownsDevice: false);
        using var session = (GpuDecodeSession)engine.CreateSequence(n, plan);
        var gpuLp = new double[n - 1];
        session.Prefill(tokens.AsSpan(0, half), (i, logits) => { if (i == half - 1) gpuLp[i] = Logits.LogSoftmaxAt(logits, tokens[half]); });
        double gpuKeys = 0;
        for (int i = half; i < n - 1; i++)
        {
            session.Decode(tokens[i]);
            gpuLp[i] = Logits.LogSoftmaxAt(session.Logits, tokens[i + 1]);
            gpuKeys += session.KeysAttendedLastStep();
        }
        double max = 0, sum = 0, fromDense = 0;
        for (int i = half; i < n - 1; i++)
        {
            double d = Delta(gpuLp[i], cpuLp[i]);
            max = Math.Max(max, d);
            sum += d;
            fromDense = Math.Max(fromDense, Delta(cpuLp[i], dense[i]));
        }
        var (mean, min, worst) = Overlap(cpuPlan, session.Plan!.Ops);
        return new SparseResult(directory, spec.ToString() ?? "", n, max, sum / (n - 1 - half), fromDense)
        {
            MeanOverlap = mean, MinOverlap = min, WorstList = worst,
            CpuKeysAttended = observer.Totals().KeysAttendedPerStep, GpuKeysAttended = gpuKeys / (n - 1 - half),
        };
    }

    private static (double Mean, double Min, string Worst) Overlap(SpanPlanOps cpu, GpuPlanOps gpu)
    {
        var plan = gpu.Plan;
        double sum = 0, min = 1;
        string worst = "";
        int count = 0;
        for (int id = 0; id < plan.Layout.Buffers.Count; id++)
        {
            var b = plan.Layout.Buffers[id];
            if (b.Kind != Selection.PlanBufferKind.Indices) continue;
            var set = new Selection.IndexSet(id);
            for (int layer = 0; layer < (b.PerLayer ? plan.Layers : 1); layer++)
                for (int h = 0; h < plan.Heads; h++)
                    for (int list = 0; list < b.Depth; list++)
                    {
                        var c = cpu.Indices(set, b.PerLayer ? layer : plan.Layers - 1, h, list).ToArray();
                        var g = gpu.Download(set, layer, 0, h, list);
                        if (c.Length == 0 && g.Length == 0) continue;
                        double o = c.Intersect(g).Count() / (double)Math.Max(c.Length, g.Length);
                        sum += o;
                        if (o < min) worst = $"{b.Name} layer {layer} head {h} list {list}: {c.Length} on the CPU, {g.Length} on the GPU";
                        min = Math.Min(min, o);
                        count++;
                    }
        }
        return count == 0 ? (double.NaN, double.NaN, "") : (sum / count, min, worst);
    }
}

