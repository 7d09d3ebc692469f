using SparseDecode.Model;

namespace SparseDecode.Cuda;

/// <summary>End-to-end decode steps of a real model shape with random weights (filled on the device) and a
/// random bf16 KV cache up to the context (no prefill needed for timing): per method, one whole step (all layers,
/// MLP, logits) captured into a CUDA graph and timed with events over replays (median), beside its floor — the
/// bytes the step must read (weights + the KV it attends to + what its selection reads) over the read bandwidth
/// measured in the same run.</summary>
public sealed class GpuStepBench
{
    public sealed record Options
    {
        public required ModelConfig Shape { get; init; }
        public int[] Contexts { get; init; } = [8192, 32768, 131072];
        public (int Context, int Batch)[] Batched { get; init; } = [(32768, 8)];
        public StepMethod[] Methods { get; init; } = [StepMethod.Dense, StepMethod.Tidal, StepMethod.Lfps, StepMethod.Quest, StepMethod.Prhs];
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

    public void Run()
    {
        var dev = _dk.Device;
        using var s = new CudaStream(dev);
        using var timer = new CudaTimer(dev);
        ReadBandwidth = MeasureRead(s, timer);
        var c = _o.Shape;
        using var weights = GpuWeights.Random(_dk, _mk, c, s);
        WeightBytes = weights.BytesPerStep;
        Log($"{c.ArchitectureName}: {c.NumLayers} layers, hidden {c.HiddenSize}, {c.NumHeads}/{c.NumKvHeads} heads, MLP {c.IntermediateSize}, vocab {c.VocabSize}; weights read per step {WeightBytes / 1e9:F2} GB; read bandwidth {ReadBandwidth / 1e12:F3} TB/s");
        foreach (var (n, b) in _o.Contexts.Select(n => (n, 1)).Concat(_o.Batched)) Case(weights, s, timer, n, b);
    }

    private double MeasureRead(CudaStream s, CudaTimer t)
    {
        long bytes = 1L << 30;
        using var a = _dk.Device.Allocate(bytes);
        using var sink = _dk.Device.Allocate(16);
        _dk.FillRandomF32(a, bytes / 4, 7, 1, s);
        using var g = s.Capture(() => { for (int i = 0; i < 4; i++) _dk.ReadAll(a, bytes, sink, s); });
        double ms = t.MedianReplay(g, s, 5, out _) / 4;
        return bytes / (ms * 1e-3);
    }

    private void Case(GpuWeights weights, CudaStream s, CudaTimer t, int n, int batch)
    {
        var c = _o.Shape;
        using var cache = new GpuKvCache(_dk.Device, c, batch, n);
        using var model = new GpuModel(_dk, _mk, weights, n, _o.Budget);
        cache.FillRandom(_dk, n, s);
        var rng = new Random(n + batch);
        var slots = Enumerable.Range(0, batch).ToArray();
        cache.SetRows(slots, slots.Select(_ => rng.Next(c.VocabSize)).ToArray(), Enumerable.Repeat(n - 1, batch).ToArray(), s);
        Log($"context {n}, batch {batch}: KV cache {cache.KvBytes / 1e9:F2} GB");

        if (model.TunedAttention) CrossCheckAttention(model, cache, batch, n, s);

        // the projections, MLP and logits alone (attention skipped): what the weights cost
        double noAttn = TimeStep(model, cache, batch, n, s, t, new NoAttention(), out double spread);
        Add(n, batch, "no attention (weights only)", noAttn, WeightBytes, spread,
            $"projections + MLP + logits, {_mk.GemvPlan(batch, c.HiddenSize).Kernel}");
        if (batch >= _mk.TensorCoreMinRows)
        {
            int keep = _mk.TensorCoreTileRows;
            foreach (int tile in new[] { 0, 16, 32, 64 }.Where(x => x != keep))
            {
                _mk.TensorCoreTileRows = tile;
                double other = TimeStep(model, cache, batch, n, s, t, new NoAttention(), out spread);
                Add(n, batch, tile == 0 ? "no attention, 64-row tiles where ≥ 2 blocks per SM" : $"no attention, {tile}-row tensor-core tiles",
                    other, WeightBytes, spread, "tile sweep");
            }
            _mk.TensorCoreTileRows = keep;
        }
        else
        {
            var kept = _mk.OneRowKernel;
            foreach (var variant in ModelKernels.OneRowVariants.Where(v => v != kept))
            {
                _mk.OneRowKernel = variant;
                double v1 = TimeStep(model, cache, batch, n, s, t, new NoAttention(), out spread);
                Add(n, batch, $"no attention, {variant.Kernel}", v1, WeightBytes, spread, "one-row kernel sweep");
            }
            _mk.OneRowKernel = kept;
            int keep = _mk.TensorCoreMinRows;
            _mk.TensorCoreMinRows = 1;
            double tc = TimeStep(model, cache, batch, n, s, t, new NoAttention(), out spread);
            _mk.TensorCoreMinRows = keep;
            Add(n, batch, "no attention, tensor-core products", tc, WeightBytes, spread, "gemv_mma for one row too");
        }
        double denseMs = 0;
        foreach (var method in _o.Methods)
        {
            using var att = new StepAttention(model, cache, method, batch, n, _o.Budget);
            double bytes = WeightBytes + batch * Enumerable.Range(0, c.NumLayers).Sum(att.LayerBytesPerRow);
            double ms;
            string note = "";
            if (method == StepMethod.Prhs)
            {
                att.Retrieval = true;
                double retrieval = TimeStep(model, cache, batch, n, s, t, att, out _);
                att.Retrieval = false;
                double verify = TimeStep(model, cache, batch, n, s, t, att, out spread);
                ms = (retrieval + (att.PrhsBlock - 1) * verify) / att.PrhsBlock;
                note = $"retrieval step {retrieval:F3} ms, verify-only step {verify:F3} ms, 1 in {att.PrhsBlock}";
            }
            else ms = TimeStep(model, cache, batch, n, s, t, att, out spread);
            if (method == StepMethod.Dense)
            {
                denseMs = ms;
                using var eager = new CudaTimer(_dk.Device);
                eager.Start(s);
                model.EnqueueStep(cache, batch, n, s, att);
                eager.Stop(s);
                Add(n, batch, "dense, stream launches (no graph)", eager.ElapsedMilliseconds(), bytes, 0, "launch gaps included");
            }
            else note = $"{denseMs / ms:F2}× dense" + (note.Length > 0 ? "; " + note : "");
            Add(n, batch, method.ToString().ToLowerInvariant(), ms, bytes, spread, note);
        }
    }

    private double TimeStep(GpuModel model, GpuKvCache cache, int rows, int n, CudaStream s, CudaTimer t, ILayerAttention att, out double spread)
    {
        using var g = s.Capture(() => model.EnqueueStep(cache, rows, n, s, att));
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
        _dk.FillRandomF32(model.Queries, count, 17, 2f, s);
        var kv = cache.View(0, rows, n);
        model.DenseAttention(kv, s);
        var tuned = new float[count];
        s.Synchronize();
        model.AttentionOutput.Download<float>(tuned);
        _mk.AttentionAny(kv, c.HeadDim, model.Queries, model.AttentionOutput, model.Workspace, s);
        var any = new float[count];
        s.Synchronize();
        model.AttentionOutput.Download<float>(any);
        double num = 0, den = 0;
        for (int i = 0; i < count; i++)
        {
            num += (tuned[i] - any[i]) * (double)(tuned[i] - any[i]);
            den += any[i] * (double)any[i];
        }
        double rel = Math.Sqrt(num / Math.Max(den, 1e-300));
        Log($"  check: tuned dense attention (group {c.GroupSize}) vs any-shape kernel, layer 0: relative error {rel:G3}");
        if (!(rel < 1e-4)) throw new CudaException($"The tuned attention differs from the any-shape kernel by {rel:G3} (relative).");
    }

    /// <summary>Skips attention: times what the weights cost on their own.</summary>
    private sealed class NoAttention : ILayerAttention
    {
        public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream) { }
    }
}
