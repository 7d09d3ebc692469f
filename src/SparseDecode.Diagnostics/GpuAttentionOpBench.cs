using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>The attention operator of a decode step on the GPU, per method — the counterpart of the CPU's
/// <see cref="AttentionOperatorBench"/>, with its rows: every layer's attention of one row (batch 1) over a random
/// bf16 cache, captured into a CUDA graph through the step's own code (<see cref="GpuModel.DenseAttention(in KvView, CudaStream)"/>
/// for dense, <see cref="PlanAttention"/> — the plan's selection, then attention over its list — for the others) and
/// timed with events over consecutive steps, each one position further (warm-up steps first, so history-based
/// plans are in their steady state; median over the timed steps). The selection is timed apart by a second graph
/// that queues only the plan's operations (<see cref="SelectionOnly"/>); attention = operator − selection. Queries
/// are fresh random values each step (uncorrelated: the case in which PrHS's sharing never applies). Figures are per
/// layer: a step's time ÷ the model's layers. The projections, MLP and logits are not run.</summary>
internal sealed class GpuAttentionOpBench
{
    private readonly DecodeKernels _dk;
    private readonly ModelKernels _mk;
    private readonly AttentionOperatorBench.Options _o;
    private DiagnosticKernels _random = null!;

    /// <param name="options">As the CPU's bench takes them; QueryCorrelation and Seed do not apply (fresh random queries each step).</param>
    public GpuAttentionOpBench(DecodeKernels dk, ModelKernels mk, AttentionOperatorBench.Options options)
    {
        if (options.WarmupSteps < 1 || options.Steps < 1) throw new ArgumentOutOfRangeException(nameof(options), "At least one warm-up step and one timed step.");
        _dk = dk;
        _mk = mk;
        _o = options;
    }

    /// <summary>Rows as the CPU's bench writes them; KeysScored is NaN (the device plans' counters are not read back).</summary>
    public List<AttentionOperatorBench.Row> Rows { get; } = [];

    public void Run()
    {
        var dev = _dk.Device;
        using var random = _random = new DiagnosticKernels(dev);
        using var s = new CudaStream(dev);
        using var timer = new CudaTimer(dev);
        int longest = _o.Contexts.Max();
        var c = _o.Shape with { MaxPositions = Math.Max(_o.Shape.MaxPositions, longest) };
        using var weights = RandomDeviceData.Weights(_random, _mk, c, s);
        foreach (int n in _o.Contexts)
        {
            using var cache = new GpuKvCache(dev, c, 1, n);
            int most = _o.Budgets.Select(b => Budget.Parse(Percent(b)).Resolve(n)).Max();
            using var model = new GpuModel(_dk, _mk, weights, n, most);
            RandomDeviceData.FillCache(_random, _dk, cache, n, s);
            _o.Log?.Invoke($"{c.ArchitectureName}: context {n}, {c.NumLayers} layers, {c.NumHeads}/{c.NumKvHeads} heads of {c.HeadDim}, KV cache {cache.KvBytes / 1e9:F2} GB");
            foreach (string method in _o.Methods)
            {
                bool budgeted = !string.Equals(method, "dense", StringComparison.OrdinalIgnoreCase);
                foreach (double budget in budgeted ? _o.Budgets : [1.0])
                {
                    var row = Measure(c, model, cache, method, budget, n, s, timer);
                    Rows.Add(row);
                    _o.Log?.Invoke($"  {n,7} {budget,6:P0} {method,-10} selection {row.SelectionMs,8:F4} ms  attention {row.AttentionMs,8:F4} ms  per layer  spread {row.Spread:P0}  attended/head {row.KeysAttended,9:F0}");
                }
            }
        }
    }

    private static string Percent(double share) => (share * 100).ToString("R", System.Globalization.CultureInfo.InvariantCulture) + "%";

    private AttentionOperatorBench.Row Measure(ModelConfig c, GpuModel model, GpuKvCache cache, string method, double budget, int n,
        CudaStream s, CudaTimer t)
    {
        var spec = SelectorSpec.ParseInline(method, Percent(budget));
        int layers = c.NumLayers;
        if (spec.IsDense)
        {
            double dense = Time(c, model, cache, n, s, t, () => { for (int l = 0; l < layers; l++) model.DenseAttention(cache.View(l, 1, n), s); },
                reset: null, out double spread);
            return new(c.ArchitectureName, n, 1, n, spec.Method, 0, 0, dense / layers, spread, double.NaN, n);
        }
        var plan = spec.CreatePlan(c, n);
        using var att = new PlanAttention(model, cache, plan, 1);
        var only = new SelectionOnly(att, cache);
        double op = Time(c, model, cache, n, s, t, () => { for (int l = 0; l < layers; l++) att.Enqueue(model, l, cache.View(l, 1, n), s); },
            () => att.Reset(s), out double opSpread);
        long attended = att.KeysAttended(0, n);
        double sel = Time(c, model, cache, n, s, t, () => { for (int l = 0; l < layers; l++) only.Enqueue(model, l, cache.View(l, 1, n), s); },
            () => att.Reset(s), out _);
        return new(c.ArchitectureName, n, budget, plan.Budget.Resolve(n), method.Contains(':') ? method : spec.Method, 0, sel / layers, Math.Max(0, op - sel) / layers, opSpread,
            double.NaN, attended / (double)(layers * c.NumHeads));
    }

    /// <summary>Median time of the captured graph over the timed steps, each replay at the next position with fresh
    /// random queries (written outside the timed region).</summary>
    private double Time(ModelConfig c, GpuModel model, GpuKvCache cache, int n, CudaStream s, CudaTimer t, Action enqueue, Action? reset, out double spread)
    {
        int total = _o.WarmupSteps + _o.Steps, first = Math.Max(0, n - total);
        int[] slots = [0], tokens = [0], positions = [first];
        reset?.Invoke();
        cache.SetRows(slots, tokens, positions, s);
        using var g = s.Capture(enqueue);
        var times = new List<double>();
        for (int i = 0; i < total && first + i < n; i++)
        {
            positions[0] = first + i;
            cache.SetRows(slots, tokens, positions, s);
            _random.FillRandomF32(model.Queries, c.QDim, (uint)(101 + i), 2f, s);
            t.Start(s);
            g.Launch(s);
            t.Stop(s);
            double ms = t.ElapsedMilliseconds();
            if (i >= _o.WarmupSteps) times.Add(ms);
        }
        times.Sort();
        double median = times[times.Count / 2];
        spread = (times[^1] - times[0]) / median;
        return median;
    }

    /// <summary>The plan's part of <see cref="PlanAttention.Enqueue(GpuModel, int, in KvView, CudaStream)"/> alone:
    /// the step's begin on layer 0, the layer's binding, its operations and the page-summary update Quest's dense
    /// layers make — without the attention that follows.</summary>
    private sealed class SelectionOnly(PlanAttention attention, GpuKvCache cache) : ILayerAttention
    {
        public void Enqueue(GpuModel model, int layer, in KvView kv, CudaStream stream)
        {
            var ops = attention.Ops;
            if (layer == 0)
            {
                ops.UseRows(kv.Rows);
                ops.BeginStep(stream);
            }
            ops.Bind(layer, kv, model.Queries, cache.Positions, stream);
            _ = attention.Plan.Layer(ops, layer);
            if (attention.Plan.ReadsPageSummaries && !ops.UpdatedPageSummaries)
                model.Kernels.PageUpdate(kv, cache.Positions, model.Config.HeadDim, stream);
        }
    }
}
