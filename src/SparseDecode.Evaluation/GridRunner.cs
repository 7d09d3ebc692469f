using System.Diagnostics;
using System.Numerics.Tensors;
using SparseDecode.Cpu;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Evaluation;

/// <summary>Runs an evaluation grid: each sample (task × context × index) is generated from its seed and prefilled
/// once with dense attention; every (method, budget) pair then decodes from its own copy of that cache, twice —
/// once un-observed to time the steps and produce the answer, once with the observer (which computes dense
/// attention beside the method) over the same tokens to measure fidelity. Cells already in the store are skipped;
/// a sample whose cells are all stored is not even prefilled. Runs on any engine; where the engine has no attention
/// observer (the GPU) the fidelity pass is skipped and the cell's fidelity figures are NaN (not measured).
/// <para>With <see cref="EvalGrid.Speculation"/> each sparse needle cell decodes its sample a third time, from
/// another copy: self-speculatively (<see cref="SpeculativeDecoder"/>, its method drafting, dense attention
/// verifying), and its tokens are compared with dense decoding's of the sample — the dense cell's own when it runs
/// in the same invocation, else one dense decode of the sample for all its cells.</para></summary>
public sealed class GridRunner
{
    private readonly IInferenceEngine _engine;
    private readonly PromptBuilder _builder;
    private readonly EvalGrid _grid;
    private readonly ResultStore _store;
    private readonly string _modelName;
    private readonly Func<MethodBudget, SelectionPlan?> _plans;
    private readonly Func<TaskSample, IFidelityMeter> _meters;

    /// <param name="plans">The plan a pair decodes through (null: the engine's dense attention).</param>
    /// <param name="meters">Makes a fresh fidelity observer for one sequence of the given sample.</param>
    public GridRunner(IInferenceEngine engine, PromptBuilder builder, EvalGrid grid, ResultStore store, string modelName,
        Func<MethodBudget, SelectionPlan?> plans, Func<TaskSample, IFidelityMeter> meters)
    {
        _engine = engine;
        _builder = builder;
        _grid = grid;
        _store = store;
        _modelName = modelName;
        _plans = plans;
        _meters = meters;
    }

    public IProgress<EvalProgress>? Progress { get; init; }

    /// <summary>Run every pair over a short prompt before the first cell so that step times measure optimised code.</summary>
    public bool WarmUpFirst { get; init; } = true;

    /// <summary>Called after each cell that ran (not for cells found in the store).</summary>
    public Action<CellResult>? CellDone { get; init; }

    /// <summary>Expected seconds of a dense prefill on a 2-core machine (a rough model that only shapes the ETA).</summary>
    public static double PrefillSeconds(int context) => context * 1e-3 + context * (double)context * 1.8e-7;

    /// <summary>Expected seconds of one cell's decode passes on a 2-core machine (a speculative pass costs about
    /// two plain ones: the drafts, then the dense rows verifying them).</summary>
    public double CellSeconds(int context)
    {
        double step = 3e-3 + context * 1e-6;
        int steps = _grid.TimingSteps + _grid.AnswerSlack;
        return steps * step * (_grid.Speculation is null ? 1 : 3) + Math.Min(_grid.FidelitySteps, steps) * step * 3;
    }

    public double EstimateSeconds(int context, int pendingPairs) =>
        pendingPairs == 0 ? 0 : PrefillSeconds(context) + pendingPairs * CellSeconds(context);

    /// <summary>Runs every cell not yet stored and returns all of the grid's cells.</summary>
    public IReadOnlyList<CellResult> Run(CancellationToken cancel = default)
    {
        var pairs = _grid.Pairs;
        // sample index outside task: a run stopped early has covered every task about equally
        var samples = new List<(int Context, string Task, int Index)>();
        foreach (int context in _grid.Contexts)
            for (int s = 0; s < _grid.Samples; s++)
                foreach (string task in _grid.Tasks) samples.Add((context, task, s));

        double total = 0;
        int cellsTotal = samples.Count * pairs.Count, cached = 0;
        foreach (var (context, task, index) in samples)
        {
            int pending = pairs.Count(p => Stored(task, context, index, p) is null);
            cached += pairs.Count - pending;
            total += EstimateSeconds(context, pending);
        }
        double done = 0;
        int cellsDone = cached;
        Progress?.Report(new EvalProgress(0, total, "starting", cellsDone, cellsTotal, cached));

        bool warm = !WarmUpFirst;
        foreach (var (context, task, index) in samples)
        {
            // dense first: its answer is the reference the sample's speculative runs are compared with
            var todo = pairs.Where(p => Stored(task, context, index, p) is null).OrderBy(p => p.IsDense ? 0 : 1).ToList();
            if (todo.Count == 0) continue;
            cancel.ThrowIfCancellationRequested();
            if (!warm)
            {
                Progress?.Report(new EvalProgress(done, total, "warming up (JIT) on a short prompt", cellsDone, cellsTotal, cached));
                WarmUp(pairs);
                warm = true;
            }
            Progress?.Report(new EvalProgress(done, total, $"{task} @ {context} #{index}: generating and prefilling", cellsDone, cellsTotal, cached));
            var prepared = Prepare(task, context, index);
            using var prefilled = prepared.Sequence;
            double cellShare = CellSeconds(context);
            done += PrefillSeconds(context);
            foreach (var pair in todo)
            {
                cancel.ThrowIfCancellationRequested();
                Progress?.Report(new EvalProgress(done, total, $"{task} @ {context} #{index}: {pair}", cellsDone, cellsTotal, cached));
                var result = RunCell(prepared, pair);
                _store.Add(result);
                CellDone?.Invoke(result);
                done += cellShare;
                cellsDone++;
            }
            Progress?.Report(new EvalProgress(done, total, $"{task} @ {context} #{index}: done", cellsDone, cellsTotal, cached));
        }
        Progress?.Report(new EvalProgress(total, total, "done", cellsTotal, cellsTotal, cached));
        return Collect();
    }

    /// <summary>The grid's cells as stored (in grid order); cells missing from the store are left out.</summary>
    public IReadOnlyList<CellResult> Collect()
    {
        var list = new List<CellResult>();
        foreach (int context in _grid.Contexts)
            foreach (string task in _grid.Tasks)
                for (int s = 0; s < _grid.Samples; s++)
                    foreach (var p in _grid.Pairs)
                        if (Stored(task, context, s, p) is { } c) list.Add(c);
        return list;
    }

    /// <summary>This grid's cell of the sample from the store, or null. A cell stored by a grid with another
    /// `--samples` has the same key but was decoded from a prompt with its needles at another depth (sample i of n
    /// sits at (i + 0.5)/n): it is not this sample's, and pairing it with cells of this grid would compare methods
    /// on different prompts, so it runs again.</summary>
    private CellResult? Stored(string task, int context, int index, MethodBudget pair)
    {
        var c = _store.Get(_grid.Key(_modelName, task, context, index, pair));
        double? depth = RulerTasks.PlacesNeedles(task) ? _grid.DepthOf(index) : null;
        bool same = (c?.Depth, depth) switch
        {
            (null, null) => true,
            (double a, double b) => Math.Abs(a - b) < 1e-12,
            _ => false,
        };
        return same ? c : null;
    }

    /// <summary>Runs every pair over a short prompt, un-observed and observed, so that the first cells' step times
    /// measure optimised code: .NET compiles hot methods again, optimised, only after they have run a while.</summary>
    private void WarmUp(IReadOnlyList<MethodBudget> pairs)
    {
        var sample = _builder.Build(RulerTasks.Perplexity, 480, null, 12345, 40);
        int capacity = sample.Prompt.Length + sample.Answer.Length + 1;
        using var prefilled = _engine.CreateSequence(capacity);
        prefilled.Prefill(sample.Prompt);
        for (int round = 0; round < 2; round++)
            foreach (var pair in pairs)
            {
                using (var copy = prefilled.Fork(capacity, _plans(pair)))
                {
                    var meter = _meters(sample);
                    for (int i = 0; i < sample.Answer.Length; i++)
                        copy.Decode(sample.Answer[i], i % 8 == 0 && _engine.SupportsObserver ? meter.Observer : null);
                    meter.Read(sample.Answer.Length);
                }
                if (_grid.Speculation is { } speculation && !pair.IsDense)
                    Speculate(prefilled, pair, speculation, sample.Answer.Length);
            }
    }

    private sealed record Prepared(TaskSample Sample, int Context, int Index, IDecodeSequence Sequence, int Steps, double PrefillSeconds)
    {
        /// <summary>Dense decoding's greedy tokens of the sample (the speculative runs' reference), once known.</summary>
        public int[]? DenseTokens { get; set; }
    }

    private Prepared Prepare(string task, int context, int index)
    {
        bool ppl = task == RulerTasks.Perplexity;
        // perplexity: one text per sample index, drawn for the longest context, so every context scores the same
        // continuation and only the amount of history differs (the comparison "does it fall with length" needs)
        int longest = _grid.Contexts.Max();
        var sample = ppl
            ? _builder.Build(task, _grid.PromptLength(context), null, _grid.SampleSeed(task, longest, index),
                _grid.PerplexityTokens, _grid.PromptLength(longest))
            : _builder.Build(task, _grid.PromptLength(context), RulerTasks.PlacesNeedles(task) ? _grid.DepthOf(index) : null,
                _grid.SampleSeed(task, context, index));
        // decode calls per cell: the forced continuation (its first token is predicted by the prefill); for code
        // completion every free position, since the model's line may run longer than the expected one (RunCell
        // stops at its newline); else enough for the answer plus slack; never fewer than the timing steps
        int steps = ppl ? sample.Answer.Length - 1
            : task == RulerTasks.CodeCompletion ? EvalGrid.Reserve - 1
            : Math.Max(_grid.TimingSteps, sample.Answer.Length + _grid.AnswerSlack);
        steps = Math.Min(steps, context - sample.Prompt.Length - 1);
        var sequence = _engine.CreateSequence(sample.Prompt.Length + steps + 1);
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            sequence.Prefill(sample.Prompt);
        }
        catch
        {
            sequence.Dispose();
            throw;
        }
        return new Prepared(sample, context, index, sequence, steps, Stopwatch.GetElapsedTime(t0).TotalSeconds);
    }

    /// <summary>Without an observer: keys attended per step over `count` steps, from a sequence that can count
    /// them (the GPU's device plans), else NaN.</summary>
    private double CountAttended(IDecodeSequence prefilled, int capacity, MethodBudget pair, int[] tokens, int count)
    {
        using var copy = prefilled.Fork(capacity, _plans(pair));
        if (copy is not ICountsAttendedKeys probe || count == 0) return double.NaN;
        double sum = 0;
        for (int i = 0; i < count; i++)
        {
            copy.Decode(tokens[i]);
            long keys = probe.KeysAttendedLastStep();
            if (keys < 0) return double.NaN;
            sum += keys;
        }
        return sum / count;
    }

    private CellResult RunCell(Prepared p, MethodBudget pair)
    {
        long start = Stopwatch.GetTimestamp();
        var sample = p.Sample;
        bool ppl = sample.Task == RulerTasks.Perplexity;
        bool oneLine = sample.Task == RulerTasks.CodeCompletion;
        int steps = p.Steps;

        // pass 1, un-observed: the answer (or the forced continuation's log-likelihood) and the step time
        var tokens = new int[steps + 1];
        var stepSeconds = new double[steps];
        int capacity = p.Sequence.Capacity;
        var (nll, decoded) = Decode(p, _plans(pair), tokens, stepSeconds, oneLine);
        if (decoded < steps)
        {
            steps = decoded;
            tokens = tokens[..(steps + 1)];
            stepSeconds = stepSeconds[..steps];
        }
        if (pair.IsDense && !ppl) p.DenseTokens = tokens;

        // pass 2, observed: the same tokens through a fresh copy with the fidelity observer attached
        int observed = _engine.SupportsObserver ? Math.Min(_grid.FidelitySteps, steps) : 0;
        var f = FidelityReading.NotMeasured;
        if (observed > 0)
        {
            var meter = _meters(sample);
            using (var copy = p.Sequence.Fork(capacity, _plans(pair)))
                for (int i = 0; i < observed; i++) copy.Decode(tokens[i], meter.Observer);
            f = meter.Read(observed);
        }
        else f = f with { KeysAttendedPerStep = CountAttended(p.Sequence, capacity, pair, tokens, Math.Min(_grid.FidelitySteps, steps)) };

        var timed = stepSeconds.Skip(1).Order().ToArray(); // the first step warms the plan's buffers
        double median = timed.Length == 0 ? stepSeconds[0] : timed[timed.Length / 2];
        string? generated = null;
        AnswerScore score = default;
        if (!ppl) (generated, score) = Answer(sample, tokens);
        // pass 3 (--speculate): the lossless column
        var speculative = _grid.Speculates(sample.Task, pair) ? SpeculativeCell(p, pair) : null;
        int budgetTokens = pair.IsDense ? sample.Prompt.Length : Budget.Parse(pair.Budget).Resolve(sample.Prompt.Length);
        return new CellResult
        {
            Key = _grid.Key(_modelName, sample.Task, p.Context, p.Index, pair),
            Model = _modelName,
            Method = pair.Method,
            Budget = pair.Budget,
            Context = p.Context,
            Task = sample.Task,
            Sample = p.Index,
            Seed = sample.Seed,
            Depth = sample.Depth,
            PromptTokens = sample.Prompt.Length,
            PromptFingerprint = sample.Fingerprint,
            BudgetTokens = budgetTokens,
            Score = ppl ? 0 : score.Score,
            Exact = score.Exact,
            Partial = score.Partial,
            Expected = ppl ? null : sample.AnswerText.Trim(),
            Generated = generated?.Trim(),
            Nll = ppl ? nll / steps : null,
            TimedSteps = steps,
            StepMs = median * 1e3,
            ObservedSteps = observed,
            MassRecall = f.MassRecall,
            TopKRecall = f.TopKRecall,
            OutputError = f.OutputError,
            KeysScoredPerStep = f.KeysScoredPerStep,
            KeysAttendedPerStep = f.KeysAttendedPerStep,
            SelectMsPerStep = f.SelectSecondsPerStep * 1e3,
            AttendMsPerStep = f.AttendSecondsPerStep * 1e3,
            NeedleRecall = observed > 0 && double.IsFinite(f.NeedleRecall) ? f.NeedleRecall : null,
            NeedleMassRecall = observed > 0 && double.IsFinite(f.NeedleMassRecall) ? f.NeedleMassRecall : null,
            Layers = f.Layers,
            PrefillSeconds = p.PrefillSeconds,
            Seconds = Stopwatch.GetElapsedTime(start).TotalSeconds,
            Speculative = speculative,
        };
    }

    /// <summary>Decodes the sample from a copy of its prefill through `plan` (null: dense) and fills `tokens`:
    /// greedy (tokens[0] from the prefill's logits, each step's choice after it) or, for ppl, the forced
    /// continuation. Each step's wall time goes to `stepSeconds` where given. `oneLine`: the answer is one line, so
    /// decoding stops once a generated token holds a newline and the grid's timing steps have run. Returns the
    /// continuation's summed negative log-likelihood (ppl; 0 otherwise) and the steps decoded (tokens[0 .. steps]
    /// are filled).</summary>
    private (double Nll, int Steps) Decode(Prepared p, SelectionPlan? plan, int[] tokens, double[]? stepSeconds, bool oneLine)
    {
        var sample = p.Sample;
        bool ppl = sample.Task == RulerTasks.Perplexity;
        double nll = 0;
        using var copy = p.Sequence.Fork(p.Sequence.Capacity, plan);
        tokens[0] = ppl ? sample.Answer[0] : TensorPrimitives.IndexOfMax(copy.Logits);
        bool lineEnded = oneLine && _builder.HasNewline(tokens[0]);
        for (int i = 0; i + 1 < tokens.Length; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            copy.Decode(tokens[i]);
            if (stepSeconds is not null) stepSeconds[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (ppl)
            {
                tokens[i + 1] = sample.Answer[i + 1];
                nll -= Logits.LogSoftmaxAt(copy.Logits, tokens[i + 1]);
            }
            else tokens[i + 1] = TensorPrimitives.IndexOfMax(copy.Logits);
            // a completed line is the whole answer; the timing steps still run, so every cell times as many
            lineEnded |= oneLine && _builder.HasNewline(tokens[i + 1]);
            if (lineEnded && i + 1 >= _grid.TimingSteps) return (nll, i + 1);
        }
        return (nll, tokens.Length - 1);
    }

    /// <summary>Dense decoding's greedy tokens of a needle sample, as its dense cell decodes them.</summary>
    private int[] DenseTokens(Prepared p)
    {
        var tokens = new int[p.Steps + 1];
        int steps = Decode(p, null, tokens, null, p.Sample.Task == RulerTasks.CodeCompletion).Steps;
        return tokens[..(steps + 1)];
    }

    /// <summary>The answer line of generated tokens and its score.</summary>
    private (string Generated, AnswerScore Score) Answer(TaskSample sample, ReadOnlySpan<int> tokens)
    {
        string text = _builder.Tokenizer.Decode(tokens);
        return (AnswerScorer.AnswerLine(text), AnswerScorer.Score(sample.Task, sample.AnswerText, sample.Items, text));
    }

    /// <summary>`count` tokens decoded greedily by self-speculative decoding from a copy of `prefilled`, the pair's
    /// plan drafting: the decoder generate runs (<see cref="SpeculativeDecoder"/>), with no stop token, so that it
    /// yields as many tokens as the cell's own decode.</summary>
    private (List<int> Tokens, SpeculationStats Stats, double Seconds) Speculate(IDecodeSequence prefilled, MethodBudget pair,
        SpeculationOptions options, int count)
    {
        var plan = _plans(pair) ?? throw new ArgumentException("Speculative decoding drafts with a sparse method; dense has nothing to draft.");
        using var copy = prefilled.Fork(prefilled.Capacity, plan);
        var decoder = new SpeculativeDecoder(_engine.Config.VocabSize, options);
        var tokens = new List<int>(count);
        long t0 = Stopwatch.GetTimestamp();
        decoder.Run(copy, plan, new Sampler(SamplingOptions.Greedy), count, [], tokens);
        return (tokens, decoder.Stats, Stopwatch.GetElapsedTime(t0).TotalSeconds);
    }

    /// <summary>The cell's lossless column: its sample decoded speculatively, compared with dense decoding's tokens
    /// and scored as the cell's own answer is.</summary>
    private SpeculativeRun SpeculativeCell(Prepared p, MethodBudget pair)
    {
        var dense = p.DenseTokens ??= DenseTokens(p);
        var options = _grid.Speculation!;
        var (tokens, stats, seconds) = Speculate(p.Sequence, pair, options, dense.Length);
        int same = 0;
        while (same < Math.Min(tokens.Count, dense.Length) && tokens[same] == dense[same]) same++;
        bool identical = tokens.Count == dense.Length && same == dense.Length;
        var (generated, score) = Answer(p.Sample, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tokens));
        return new SpeculativeRun
        {
            Draft = options.ToString(),
            IdenticalToDense = identical,
            FirstDifference = identical ? null : same,
            Tokens = tokens.Count,
            Passes = stats.Passes,
            Drafted = stats.Drafted,
            Accepted = stats.Accepted,
            Score = score.Score,
            Exact = score.Exact,
            Partial = score.Partial,
            Generated = generated.Trim(),
            MsPerToken = seconds * 1e3 / Math.Max(1, tokens.Count),
        };
    }
}
