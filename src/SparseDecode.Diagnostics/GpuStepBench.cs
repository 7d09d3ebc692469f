using SparseDecode.Cuda;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>End-to-end decode steps of a real model shape with random weights (filled on the device) and a
/// random bf16 KV cache up to the context (no prefill needed for timing): per method, one whole step (all layers,
/// MLP, logits, and the method's real selection plan with its state on the device) captured into a CUDA graph and
/// timed with events over consecutive steps (each replay one position further, so history-based methods see
/// real step-to-step shifts; median), beside its floor — the bytes the step must read (weights + the KV it attends
/// to + the keys or page summaries its selection scores) over the read bandwidth measured in the same run.</summary>
internal sealed class GpuStepBench
{
    public sealed record Options
    {
        public required ModelConfig Shape { get; init; }
        public int[] Contexts { get; init; } = [8192, 32768, 131072];
        public (int Context, int Batch)[] Batched { get; init; } = [(32768, 8)];
        public string[] Methods { get; init; } = ["dense", "tidal", "lfps", "prhs", "hshare", "quest", "oracle", "streaming"];
        public int Budget { get; init; } = 2048;
        public int Repetitions { get; init; } = 20;
        public Action<string>? Log { get; init; }
    }

    /// <summary>One measured step: Milliseconds per step (all rows), FloorMilliseconds = Bytes ÷ read bandwidth.</summary>
    public sealed record Row(string Shape, int Context, int Batch, string Method, double Milliseconds, double FloorMilliseconds,
        double Bytes, double Spread, string Note)
    {
        public double OverFloor => Milliseconds / FloorMilliseconds;
        public double TokensPerSecond => Batch / (Milliseconds * 1e-3);
    }

    private readonly DecodeKernels _dk;
    private readonly ModelKernels _mk;
    private readonly Options _o;

    public double ReadBandwidth { get; private set; }
    public long WeightBytes { get; private set; }
    public List<Row> Rows { get; } = [];

    public GpuStepBench(DecodeKernels dk, ModelKernels mk, Options options)
    {
        _dk = dk;
        _mk = mk;
        _o = options;
    }

    private void Log(string s) => _o.Log?.Invoke(s);

    // the random-data and read kernels, loaded for one Run
    private DiagnosticKernels _random = null!;

    public void Run()
    {
        var dev = _dk.Device;
        using var random = _random = new DiagnosticKernels(dev);
        using var s = new CudaStream(dev);
        using var timer = new CudaTimer(dev);
        ReadBandwidth = MeasureRead(s, timer);
        var c = _o.Shape;
        using var weights = RandomDeviceData.Weights(_random, _mk, c, s);
        WeightBytes = weights.BytesPerStep;
        Log($"{c.ArchitectureName}: {c.NumLayers} layers, hidden {c.HiddenSize}, {c.NumHeads}/{c.NumKvHeads} heads, MLP {c.IntermediateSize}, vocab {c.VocabSize}; weights read per step {WeightBytes / 1e9:F2} GB; read bandwidth {ReadBandwidth / 1e12:F3} TB/s");
        foreach (var (n, b) in _o.Contexts.Select(n => (n, 1)).Concat(_o.Batched)) Case(weights, s, timer, n, b);
    }

    private double MeasureRead(CudaStream s, CudaTimer t)
    {
        long bytes = 1L << 30;
        using var a = _dk.Device.Allocate(bytes);
        using var sink = _dk.Device.Allocate(16);
        _random.FillRandomF32(a, bytes / 4, 7, 1, s);
        using var g = s.Capture(() => { for (int i = 0; i < 4; i++) _random.ReadAll(a, bytes, sink, s); });
        double ms = t.MedianReplay(g, s, 5, out _) / 4;
        return bytes / (ms * 1e-3);
    }

    private void Case(GpuWeights weights, CudaStream s, CudaTimer t, int n, int batch)
    {
        var c = _o.Shape;
        using var cache = new GpuKvCache(_dk.Device, c, batch, n, maxRows: batch);
        using var model = new GpuModel(_dk, _mk, weights, n, _o.Budget, maxRows: batch);
        RandomDeviceData.FillCache(_random, _dk, cache, n, s);
        var rng = new Random(n + batch);
        var slots = Enumerable.Range(0, batch).ToArray();
        cache.SetRows(slots, slots.Select(_ => rng.Next(c.VocabSize)).ToArray(), Enumerable.Repeat(n - 1, batch).ToArray(), s);
        Log($"context {n}, batch {batch}: KV cache {cache.KvBytes / 1e9:F2} GB");

        if (model.TunedAttention)
        {
            CrossCheckAttention(model, cache, batch, n, s);
            CrossCheckScores(model, cache, batch, n, s);
        }

        // the projections, MLP and logits alone (attention skipped): what the weights cost
        double noAttn = TimeStep(model, cache, batch, n, s, t, new NoAttention(), out double spread);
        Add(n, batch, "no attention (weights only)", noAttn, WeightBytes, spread,
            $"projections + MLP + logits, {(batch >= _mk.Options.CublasMinRows ? $"cuBLAS, {_mk.Options.ActivationParts} bf16 part(s)" : _mk.GemvPlan(Math.Min(batch, ModelKernels.MaxRows)).Kernel)}");
        // the other matrix-vector kernel choices, each through its own kernels and model (the choice is fixed when
        // ModelKernels is made; the weights and the cache are shared)
        double TimeWith(GemvOptions options, out double sp)
        {
            using var mk = new ModelKernels(_dk.Device, options);
            using var m = new GpuModel(_dk, mk, weights, n, _o.Budget, maxRows: batch);
            return TimeStep(m, cache, batch, n, s, t, new NoAttention(), out sp);
        }
        var chosen = _mk.Options;
        if (batch >= chosen.CublasMinRows)
        {
            // the same products on the CUDA cores in f32, in launches of up to 8 rows (what --no-tensor-cores runs)
            double f32 = TimeWith(GemvOptions.CudaCoresOnly, out spread);
            Add(n, batch, $"no attention, CUDA-core kernels in launches of {ModelKernels.MaxRows} rows", f32, WeightBytes, spread, "product sweep");
        }
        else
        {
            foreach (var variant in ModelKernels.OneRowVariants.Where(v => v != chosen.OneRowKernel))
            {
                double v1 = TimeWith(chosen with { OneRowKernel = variant }, out spread);
                Add(n, batch, $"no attention, {variant.Kernel}", v1, WeightBytes, spread, "one-row kernel sweep");
            }
            double viaCublas = TimeWith(chosen with { CublasMinRows = 1 }, out spread);
            Add(n, batch, "no attention, cuBLAS products", viaCublas, WeightBytes, spread, "cuBLAS for one row too");
        }
        if (chosen.ActivationParts != 1)
        {
            // the activations rounded to bf16 once (`--gpu-decode bf16`): a third of the tensor-core work
            double bf16 = TimeWith(GemvOptions.Bf16, out spread);
            Add(n, batch, "no attention, cuBLAS, activations in bf16", bf16, WeightBytes, spread, "--gpu-decode bf16");
        }
        double denseMs = 0;
        int denseNodes = 0;
        foreach (string method in _o.Methods)
        {
            var spec = MethodSpec(method);
            var plan = spec.CreatePlan(c, n)
                ?? throw new ArgumentException($"The {method} method is a host policy, not a device plan: gpu-step times only methods that run inside the step graph.");
            using var att = new PlanAttention(model, cache, plan, batch);
            att.Reset(s);
            var (ms, sp, scored, nodes) = TimeSteps(model, cache, batch, n, s, t, att);
            double bytes = WeightBytes + batch * StepBytes(plan, n, scored);
            if (method == "dense")
            {
                denseMs = ms;
                denseNodes = nodes;
                using var eager = new CudaTimer(_dk.Device);
                eager.Start(s);
                model.EnqueueStep(cache, batch, n, s, att);
                eager.Stop(s);
                Add(n, batch, "dense, stream launches (no graph)", eager.ElapsedMilliseconds(), bytes, 0, "launch gaps included");
            }
            string launches = $"{nodes} graph nodes per step" + (method == "dense" || denseNodes == 0 ? ""
                : $", {(nodes - denseNodes) / (double)c.NumLayers:F1} more per layer than dense");
            string note = method == "dense" ? launches : $"{denseMs / ms:F2}× dense; " +
                (plan is Selection.LfpsPlan ? $"keys scored per sparse layer and head {scored:F0} ({scored / n:P1} of the context); " : "") + launches;
            Add(n, batch, method, ms, bytes, sp, note);
        }
        if (batch > 1 && model.TunedAttention) PassAttention(model, cache, batch, n, s, t);
    }

    /// <summary>The dense attention of `batch` rows of distinct sequences and of one sequence's dense pass of `batch`
    /// tokens (speculative decoding's verification: its rows' floor reads that sequence's keys and values once), through
    /// the tensor-core pass kernel (<see cref="DecodeKernels.RunsAttention"/>, which takes each distinct row as a run of
    /// one) and the one-query-per-row kernel (<see cref="DecodeKernels.Attention"/>).</summary>
    private void PassAttention(GpuModel model, GpuKvCache cache, int batch, int n, CudaStream s, CudaTimer t)
    {
        var c = _o.Shape;
        double rowBytes = StepBytes(MethodSpec("dense").CreatePlan(c, n)!, n, 0);
        var tokens = new int[batch];
        foreach (bool pass in (bool[])[false, true])
        {
            var slots = pass ? new int[batch] : Enumerable.Range(0, batch).ToArray();
            var positions = pass ? Enumerable.Range(n - batch, batch).ToArray() : Enumerable.Repeat(n - 1, batch).ToArray();
            cache.SetRows(slots, tokens, positions, s);
            foreach (string kernel in (string[])["tensor cores", "one query per row"])
            {
                model.PassesOnTensorCores = kernel == "tensor cores";
                double ms = TimeStep(model, cache, batch, n, s, t, null, out double spread, passRows: true);
                string what = pass ? $"dense pass of {batch} tokens of one sequence" : "dense";
                Add(n, batch, $"{what}, attention {kernel}", ms, WeightBytes + (pass ? 1 : batch) * rowBytes, spread,
                    pass ? "floor: the weights and one sequence's cache" : "attention kernel sweep");
            }
            model.PassesOnTensorCores = true;
        }
    }

    /// <summary>"lfps" or "lfps:granularity=kv;radius=0": a method with its parameters.</summary>
    private Selection.SelectorSpec MethodSpec(string text) =>
        Selection.SelectorSpec.ParseInline(text, _o.Budget.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Steps timed one by one, each at the next position (the cache's rows advance between replays of the
    /// one captured graph); returns the median, its spread and the mean keys (or page summaries) the selection
    /// scored per sparse layer and head, read from the plan's counters.</summary>
    private (double Ms, double Spread, double Scored, int Nodes) TimeSteps(GpuModel model, GpuKvCache cache, int rows, int n, CudaStream s, CudaTimer t, PlanAttention att)
    {
        int warm = 3, reps = _o.Repetitions, first = Math.Max(0, n - 1 - warm - reps);
        var slots = Enumerable.Range(0, rows).ToArray();
        var tokens = new int[rows];
        var positions = new int[rows];
        void SetRows(int step)
        {
            Array.Fill(positions, first + step);
            cache.SetRows(slots, tokens, positions, s);
        }
        SetRows(0);
        using var g = s.Capture(() => model.EnqueueStep(cache, rows, n, s, att));
        var times = new List<double>();
        for (int i = 0; i < warm + reps && first + i < n; i++)
        {
            SetRows(i);
            t.Start(s);
            g.Launch(s);
            t.Stop(s);
            double ms = t.ElapsedMilliseconds();
            if (i >= warm) times.Add(ms);
        }
        var logits = model.Logits.Download<float>(model.Config.VocabSize);
        if (logits.Any(x => !float.IsFinite(x))) throw new CudaException("A decode step produced non-finite logits.");
        times.Sort();
        double median = times[times.Count / 2];
        return (median, (times[^1] - times[0]) / median, MeanScored(att.Ops, n), g.Nodes);
    }

    /// <summary>LFPS: keys scored per sparse layer and head at the last step — the mean candidate count, plus every
    /// key for the refreshes averaged over the steps so far (from the plan's own counters). 0 for the other plans:
    /// their cost is fixed by the shape (<see cref="StepBytes"/>).</summary>
    private static double MeanScored(GpuPlanOps ops, int n)
    {
        if (ops.Plan is not Selection.LfpsPlan lfps) return 0;
        var counts = ops.Counts(lfps.Candidates, 0);
        int steps = Math.Max(1, ops.Steps), sparseLayers = Math.Max(1, lfps.Layers - lfps.Settings.DenseLayers);
        double refreshes = ops.Total(lfps.State.Refreshes) / (double)(steps * sparseLayers * counts.Length);
        return counts.Average() + refreshes * n;
    }

    /// <summary>Bytes one row's step reads beyond the weights: per layer the K and V rows attended (every position
    /// in dense and selection layers, the plan's list elsewhere) and the key rows (or page min/max pairs) scored.</summary>
    private double StepBytes(Selection.SelectionPlan plan, int n, double scoredPerHead)
    {
        var c = _o.Shape;
        double row = c.HeadDim * 2.0, kv = c.NumKvHeads;
        double total = 0;
        for (int l = 0; l < c.NumLayers; l++)
        {
            var (attended, scored) = plan switch
            {
                Selection.TidalDecodePlan td => l < td.Start ? (n, 0.0) : l == td.Start || l == td.Reselect ? (n, n) : (plan.Budget.Resolve(n), 0.0),
                Selection.QuestPlan q => l < q.DenseLayers ? (n, 0.0) : (plan.Budget.Resolve(n), 2.0 * ((n + 15) / 16)),
                Selection.LfpsPlan lf => l < lf.Settings.DenseLayers ? (n, 0.0) : (plan.Budget.Resolve(n), scoredPerHead * c.NumKvHeads / plan.Heads),
                Selection.OracleTopKPlan => (plan.Budget.Resolve(n), (double)n),
                Selection.StreamingLlmPlan => (plan.Budget.Resolve(n), 0.0),
                _ => (n, 0.0),
            };
            total += kv * row * (2.0 * attended + scored);
        }
        return total;
    }

    private double TimeStep(GpuModel model, GpuKvCache cache, int rows, int n, CudaStream s, CudaTimer t, ILayerAttention? att, out double spread,
        bool passRows = false)
    {
        using var g = s.Capture(() => model.EnqueueStep(cache, rows, n, s, att, passRows));
        double ms = t.MedianReplay(g, s, _o.Repetitions, out spread);
        var logits = model.Logits.Download<float>(model.Config.VocabSize);
        if (logits.Any(x => !float.IsFinite(x))) throw new CudaException("A decode step produced non-finite logits.");
        return ms;
    }


    private void Add(int n, int batch, string method, double ms, double bytes, double spread, string note)
    {
        var row = new Row(_o.Shape.ArchitectureName, n, batch, method, ms, bytes / ReadBandwidth * 1e3, bytes, spread, note);
        Rows.Add(row);
        Log($"  {n,7} b{batch} {method,-36} {ms,8:F3} ms  floor {row.FloorMilliseconds,7:F3} ms  x{row.OverFloor,5:F2}  {row.TokensPerSecond,8:F1} tok/s  spread {spread * 100:F0}%  {note}");
    }

    /// <summary>The tuned attention kernels (groups of 4 or 8) against the any-shape kernel on this cache and
    /// random queries: ‖tuned − any‖ / ‖any‖ must be at f32 rounding level (both read the same bf16 keys).</summary>
    private void CrossCheckAttention(GpuModel model, GpuKvCache cache, int rows, int n, CudaStream s)
    {
        var c = _o.Shape;
        int count = rows * c.QDim;
        _random.FillRandomF32(model.Queries, count, 17, 2f, s);
        var kv = cache.View(0, rows, n);
        model.DenseAttention(kv, s);
        var tuned = new float[count];
        s.Synchronize();
        model.AttentionOutput.Download<float>(tuned);
        _mk.AttentionAny(kv, c.HeadDim, model.Queries, model.AttentionOutput, model.Workspace, s);
        var any = new float[count];
        s.Synchronize();
        model.AttentionOutput.Download<float>(any);
        double rel = GpuReference.RelativeError(tuned, any.Select(v => (double)v).ToArray());
        Log($"  check: tuned dense attention (group {c.GroupSize}) vs any-shape kernel, layer 0: relative error {rel:G3}");
        if (!(rel < 1e-4)) throw new CudaException($"The tuned attention differs from the any-shape kernel by {rel:G3} (relative).");
    }

    /// <summary>The tuned per-query-head scores of every key (what the plans use for this shape) against the
    /// any-shape selection kernel on this cache and random queries, layer 0: equal to f32 rounding.</summary>
    private void CrossCheckScores(GpuModel model, GpuKvCache cache, int rows, int n, CudaStream s)
    {
        var c = _o.Shape;
        using var sel = new SelectionKernels(_dk.Device);
        int stride = LaunchPlan.ScoreStride(n), count = rows * c.NumHeads * stride;
        using var a = _dk.Device.Allocate(count * 4L);
        using var b = _dk.Device.Allocate(count * 4L);
        _random.FillRandomF32(model.Queries, rows * c.QDim, 19, 2f, s);
        var kv = cache.View(0, rows, n);
        _dk.Score(kv, model.Queries, null, 0, IndexHeads.KvHead, IndexHeads.QueryHead, a, stride, s);
        sel.Scores(kv, model.Queries, new SelectionKernels.Heads(c.NumHeads, 1, c.GroupSize, c.NumHeads, c.HeadDim, rows),
            1f / MathF.Sqrt(c.HeadDim), null, null, 0, null, 0, b, stride, s);
        s.Synchronize();
        var x = a.Download<float>(count);
        var y = b.Download<float>(count);
        var valid = Enumerable.Range(0, count).Where(i => i % stride < n).ToArray();
        double rel = GpuReference.RelativeError(valid.Select(i => x[i]).ToArray(), valid.Select(i => (double)y[i]).ToArray());
        Log($"  check: tuned per-query-head scores vs the selection kernel, layer 0: relative error {rel:G3}");
        if (!(rel < 1e-5)) throw new CudaException($"The tuned scores differ from the selection kernel by {rel:G3} (relative).");
    }

    /// <summary>Skips attention: times what the weights cost on their own.</summary>
    private sealed class NoAttention : ILayerAttention
    {
        public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream) { }
    }
}
