using System.Diagnostics;
using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>The attention operator of a decode step on the CPU, per method: each layer's selection (the method's
/// plan through <see cref="SpanPlanOps"/> and <see cref="CpuSelectionBackend"/>, as <see cref="Transformer"/> runs
/// it) and its attention over the list selected (<see cref="Transformer.DecodeAttention"/>, the step's own kernel),
/// timed apart. One layer of random bf16 keys and values at the model's shape stands in for every layer
/// (<see cref="OneLayerForEvery"/>): the plan still sees each layer's index, so leading dense layers and
/// TidalDecode's full-scoring layers cost what they cost in a step. Figures are per layer, averaged over the
/// model's layers and over the timed steps, after `WarmupSteps` steps that bring history-based methods (LFPS, PrHS)
/// to their steady state; the first step of a sequence is never timed. Steps run on <see cref="WorkerPool.Shared"/>
/// (the command line's --threads). The timed loop allocates nothing.</summary>
/// <remarks>Queries follow a stationary walk: each step's query is ρ·(the last) + √(1 − ρ²)·(fresh uniform noise),
/// ρ = <see cref="Options.QueryCorrelation"/>, so methods that reuse a selection while the query stays close
/// (PrHS's sharing) see successive queries as alike as ρ makes them; with random keys the attention is diffuse,
/// so these figures are costs, never accuracies.</remarks>
public sealed class AttentionOperatorBench
{
    public sealed record Options
    {
        /// <summary>The model shape (heads, KV heads, head dim, layers); its weights are never read.</summary>
        public required ModelConfig Shape { get; init; }
        public int[] Contexts { get; init; } = [8192, 32768, 131072];
        /// <summary>Budgets as shares of the context (0.02 = 2%).</summary>
        public double[] Budgets { get; init; } = [0.01, 0.02, 0.05, 0.10];
        public string[] Methods { get; init; } = ["dense", "oracle", "tidal", "lfps", "prhs", "quest", "streaming"];
        /// <summary>Steps run before timing (at least 1: the first step of a sequence is not steady state).</summary>
        public int WarmupSteps { get; init; } = 1;
        public int Steps { get; init; } = 16;
        public double QueryCorrelation { get; init; } = 0.95;
        public int Seed { get; init; } = 7;
        public Action<string>? Log { get; init; }
    }

    /// <summary>One method at one context and budget. Milliseconds are per layer (a step's total over the model's
    /// layers ÷ layers), the mean over the timed steps; Spread = (slowest − fastest step) ÷ mean, of the operator
    /// (selection + attention). KeysScored: keys (or page summaries) the selection scored per layer and KV head;
    /// KeysAttended: keys attended per layer and query head (a list chosen per KV head serves its group).</summary>
    public sealed record Row(string Shape, int Context, double Budget, int BudgetKeys, string Method, int Threads,
        double SelectionMs, double AttentionMs, double Spread, double KeysScored, double KeysAttended)
    {
        public double OperatorMs => SelectionMs + AttentionMs;
    }

    private readonly Options _o;

    public AttentionOperatorBench(Options options)
    {
        if (options.WarmupSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), "At least one warm-up step: the first step of a sequence is not timed.");
        if (options.Steps < 1) throw new ArgumentOutOfRangeException(nameof(options), "At least one timed step.");
        if (options.Budgets.Any(b => !(b > 0 && b <= 1))) throw new ArgumentOutOfRangeException(nameof(options), "Budgets are shares of the context in (0, 1].");
        if (options.Contexts.Any(n => n <= options.WarmupSteps + options.Steps)) throw new ArgumentOutOfRangeException(nameof(options), "Every context must exceed the steps run.");
        _o = options;
    }

    public List<Row> Rows { get; } = [];

    /// <summary>Every context × budget × method. A method whose selection does not depend on the budget (dense)
    /// is run once per context, with Budget 1.</summary>
    public void Run()
    {
        foreach (int n in _o.Contexts)
        {
            var c = _o.Shape with { MaxPositions = Math.Max(_o.Shape.MaxPositions, n) };
            using var cache = RandomLayer(c, n, _o.Seed);
            _o.Log?.Invoke($"{c.ArchitectureName}: context {n}, one layer of {cache.KvHeads} KV heads × {cache.HeadDim} (bf16), {c.NumHeads} query heads, {c.NumLayers} layers, {WorkerPool.Shared.Threads} thread(s)");
            foreach (string method in _o.Methods)
            {
                bool budgeted = !string.Equals(method, "dense", StringComparison.OrdinalIgnoreCase);
                foreach (double budget in budgeted ? _o.Budgets : [1.0])
                {
                    var row = Measure(c, cache, method, budget);
                    Rows.Add(row);
                    _o.Log?.Invoke($"  {n,7} {budget,6:P0} {method,-10} selection {row.SelectionMs,9:F4} ms  attention {row.AttentionMs,9:F4} ms  per layer  spread {row.Spread:P0}  scored/kv head {row.KeysScored,9:F0}  attended/head {row.KeysAttended,9:F0}");
                }
            }
        }
    }

    /// <summary>A one-layer cache of `n` positions of uniform [-1, 1) keys and values.</summary>
    public static KvCache RandomLayer(ModelConfig c, int n, int seed)
    {
        var cache = new KvCache(1, c.NumKvHeads, c.HeadDim, DType.BF16, n);
        var rng = new Random(seed);
        var k = new float[c.KvDim];
        var v = new float[c.KvDim];
        for (int pos = 0; pos < n; pos++)
        {
            for (int i = 0; i < k.Length; i++)
            {
                k[i] = rng.NextSingle() * 2 - 1;
                v[i] = rng.NextSingle() * 2 - 1;
            }
            cache.Write(0, pos, k, v);
        }
        cache.Length = n;
        return cache;
    }

    /// <summary>One method's steps over the cache: the last timed step attends all `cache.Capacity` positions, the
    /// earlier ones one fewer each.</summary>
    private Row Measure(ModelConfig c, KvCache cache, string method, double budget)
    {
        int n = cache.Capacity, layers = c.NumLayers, total = _o.WarmupSteps + _o.Steps;
        float scale = 1f / MathF.Sqrt(c.HeadDim);
        string budgetText = (budget * 100).ToString("R", System.Globalization.CultureInfo.InvariantCulture) + "%";
        var spec = SelectorSpec.ParseInline(method, budgetText);
        // dense runs without a plan, as the engine runs it
        var ops = spec.IsDense ? null : new SpanPlanOps(spec.CreatePlan(c, n));
        var granularity = ops?.Granularity ?? spec.EffectiveGranularity;
        var ws = new DecodeWorkspace(c, scale, cache, granularity);
        var every = new OneLayerForEvery(ws.Backend);
        int share = granularity == SelectionGranularity.KvHead ? c.GroupSize : 1;
        var rng = new Random(_o.Seed + 1);
        var q = ws.Q;
        for (int i = 0; i < q.Length; i++) q[i] = rng.NextSingle() * 2 - 1;
        double rho = _o.QueryCorrelation, fresh = Math.Sqrt(Math.Max(0, 1 - rho * rho));
        var stepMs = new double[_o.Steps];
        double selection = 0, attention = 0, scored = 0, attended = 0;
        for (int s = 0; s < total; s++)
        {
            int position = n - total + s;
            for (int i = 0; i < q.Length; i++) q[i] = (float)(rho * q[i] + fresh * (rng.NextSingle() * 2 - 1));
            ops?.BeginStep(position);
            long sel = 0, att = 0, keys = 0, attendedKeys = 0;
            for (int l = 0; l < layers; l++)
            {
                ws.Selection.Dense = true;
                long t0 = Stopwatch.GetTimestamp();
                if (ops is not null)
                {
                    ws.Backend.Bind(0, q, position + 1);
                    every.Layer = l;
                    ops.Select(every, ws.Selection);
                    long t1 = Stopwatch.GetTimestamp();
                    sel += t1 - t0;
                    t0 = t1;
                    keys += every.KeysScored;
                }
                Transformer.DecodeAttention(cache, 0, ws, position + 1, c, scale);
                att += Stopwatch.GetTimestamp() - t0;
                attendedKeys += KeysAttended(ws.Selection, position + 1, c.NumHeads, share);
            }
            if (s < _o.WarmupSteps) continue;
            double ms = 1e3 / Stopwatch.Frequency;
            stepMs[s - _o.WarmupSteps] = (sel + att) * ms;
            selection += sel * ms;
            attention += att * ms;
            scored += keys;
            attended += attendedKeys;
        }
        double perLayer = 1.0 / (_o.Steps * layers);
        double mean = stepMs.Average();
        return new Row(c.ArchitectureName, n, budget, Budget.Parse(budgetText).Resolve(n), method.Contains(':') ? method : spec.Method, WorkerPool.Shared.Threads,
            selection * perLayer, attention * perLayer, mean > 0 ? (stepMs.Max() - stepMs.Min()) / mean : 0,
            scored * perLayer / c.NumKvHeads, attended * perLayer / c.NumHeads);
    }

    /// <summary>A row beside its baselines: OverDense = dense's operator ÷ this row's (same shape and context);
    /// IndexOverOracle = exact top-k's selection ÷ this row's selection (same shape, context and budget; NaN where
    /// either is missing or this selection took no time). What the papers call the operator speedup and the index
    /// speedup.</summary>
    public readonly record struct Compared(Row Row, double OverDense, double IndexOverOracle);

    /// <summary>Every row with its ratios to dense and to oracle of its own run (<see cref="Compared"/>).</summary>
    public static List<Compared> Compare(IReadOnlyList<Row> rows)
    {
        var result = new List<Compared>(rows.Count);
        foreach (var r in rows)
        {
            var dense = rows.FirstOrDefault(x => x.Method == "dense" && x.Shape == r.Shape && x.Context == r.Context);
            var oracle = rows.FirstOrDefault(x => x.Method == "oracle" && x.Shape == r.Shape && x.Context == r.Context && x.Budget == r.Budget);
            double overDense = dense is null || r.OperatorMs <= 0 ? double.NaN : dense.OperatorMs / r.OperatorMs;
            double overOracle = oracle is null || r.SelectionMs <= 0 ? double.NaN : oracle.SelectionMs / r.SelectionMs;
            result.Add(new Compared(r, overDense, overOracle));
        }
        return result;
    }

    /// <summary>Keys one layer attended, summed over query heads: every position for each head when dense, else each
    /// list's length times the query heads it serves.</summary>
    public static long KeysAttended(LayerSelection selection, int n, int queryHeads, int share)
    {
        if (selection.Dense) return (long)n * queryHeads;
        long t = 0;
        for (int h = 0; h < selection.Heads; h++) t += (long)selection.Count(h) * share;
        return t;
    }
}
