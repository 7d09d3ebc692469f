using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>What every engine promises its callers (Generator, Scorer, the eval grid, the server), measured: a
/// batched step equals each sequence's own step (dense and sparse sequences of different lengths mixed), a fork
/// continues exactly like the original, a truncated sequence continues like one prefilled only that far. Needs an
/// engine with <see cref="Slots"/> sequence slots of at least 96 positions.</summary>
internal static class EngineContractCheck
{
    /// <summary>One promise: the largest logit difference seen and what is allowed.</summary>
    public sealed record Check(string Name, double Worst, double Tolerance)
    {
        public bool Passed => double.IsFinite(Worst) && Worst <= Tolerance;
    }

    /// <summary>Logit difference allowed between a GPU row batched with others and the same row alone: the products
    /// of several rows run on the tensor cores, a lone row's on the one-row kernel (the same sums in another order).</summary>
    public const double GpuBatchTolerance = 2e-2;

    /// <summary>The same for a row that decodes through a selection plan: the last bits its query differs by can swap
    /// a near-tied key in a top-k, which moves the logits by a few hundredths; a row given another sequence's state
    /// or cache is off by whole units.</summary>
    public const double GpuSparseBatchTolerance = 0.1;

    /// <param name="batchTolerance">Allowed difference between a dense row batched and alone.</param>
    /// <param name="sparseBatchTolerance">The same for rows with a selection plan.</param>
    public static IReadOnlyList<Check> Run(IInferenceEngine engine, double batchTolerance, double sparseBatchTolerance)
    {
        var (dense, sparse) = BatchedStep(engine, batchTolerance, sparseBatchTolerance);
        List<Check> checks = [dense, sparse, Fork(engine), Truncate(engine), BatchedPrefill(engine, batchTolerance), Draws(engine)];
        bool speculative;
        using (var probe = engine.CreateSequence(1)) speculative = probe is ISpeculativeSequence;
        if (speculative)
        {
            checks.Add(DensePassRows(engine, batchTolerance));
            checks.Add(DensePassBatch(engine, batchTolerance));
            checks.Add(PlanRollback(engine));
            checks.Add(SpeculativeGreedy(engine, 2 * batchTolerance));
        }
        return checks;
    }

    /// <summary>Draw settings of <see cref="Draws"/>: greedy, plain temperature, top-k, top-p, both, a narrow nucleus.</summary>
    private static readonly SamplingOptions[] DrawSettings =
        [SamplingOptions.Greedy, new(1f, Seed: 1), new(0.7f, 40, Seed: 2), new(1f, 0, 0.9f, Seed: 3), new(1.2f, 500, 0.95f, Seed: 4), new(0.5f, 0, 0.5f, Seed: 5)];

    /// <summary><see cref="IInferenceEngine.DecodeAndSample"/> draws what the host's <see cref="Sampler"/> draws: pairs of
    /// identical sequences (dense and with plans, a fork of each) decode steps together, one of each pair keeping its
    /// logits, both drawing with samplers of one seed; each kept row's token must be what Sampler.Choose gives for its
    /// logits and the sampler's number, and its twin's the same. A token that differs only where the number lies within
    /// 1e-5 of a boundary between two tokens' shares (rounding of the device's sums) counts as equal; the worst is the
    /// count of other differences.</summary>
    private static Check Draws(IInferenceEngine engine)
    {
        var c = engine.Config;
        var none = new Dictionary<string, string>();
        string[] methods = ["dense", "quest", "tidal", "dense", "lfps", "dense"];
        int n = Math.Min(methods.Length, Slots / 2);
        var sequences = new List<IDecodeSequence>();
        var samplers = new List<Sampler?>();
        var twins = new List<Sampler>();
        int draws = 0, atBoundary = 0, differ = 0;
        try
        {
            for (int i = 0; i < n; i++)
            {
                var kept = engine.CreateSequence(64, engine.PlanFor(SelectorSpec.Parse(methods[i], "16", none)));
                sequences.Add(kept);
                kept.Prefill(Tokens(24 + 3 * i, c.VocabSize, 40 + i));
                sequences.Add(kept.Fork(64, engine.PlanFor(SelectorSpec.Parse(methods[i], "16", none))));
                var o = DrawSettings[i % DrawSettings.Length];
                samplers.Add(new Sampler(o));
                samplers.Add(new Sampler(o));
                twins.Add(new Sampler(o));
            }
            var keep = new bool[2 * n];
            for (int i = 0; i < n; i++) keep[2 * i] = true;
            var tokens = new int[2 * n];
            var next = new int[2 * n];
            for (int i = 0; i < n; i++) tokens[2 * i] = tokens[2 * i + 1] = Tokens(1, c.VocabSize, 60 + i)[0];
            for (int step = 0; step < 8; step++)
            {
                engine.DecodeAndSample(sequences, tokens, samplers, keep, next);
                for (int i = 0; i < n; i++)
                {
                    var twin = twins[i];
                    double u = twin.IsGreedy ? 0 : twin.Uniform();
                    var logits = sequences[2 * i].Logits;
                    int expected = twin.Choose(logits, u);
                    foreach (int got in (int[])[next[2 * i], next[2 * i + 1]])
                    {
                        draws++;
                        if (got == expected) continue;
                        if (got >= 0 && (twin.Choose(logits, Math.Max(0, u - 1e-5)) == got || twin.Choose(logits, Math.Min(0.9999999, u + 1e-5)) == got)) atBoundary++;
                        else differ++;
                    }
                    tokens[2 * i] = tokens[2 * i + 1] = expected;
                }
            }
        }
        finally
        {
            foreach (var s in sequences) s.Dispose();
        }
        return new Check($"tokens drawn by the engine = the host sampler's from the same logits and number, logits kept or not ({draws} draws, " +
            $"{string.Join("; ", DrawSettings.Take(n).Select(o => o.Temperature == 0 ? "greedy" : $"T {o.Temperature}, k {o.TopK}, p {o.TopP}"))}; " +
            $"{atBoundary} at a rounding boundary); count of other differences", differ, 0);
    }

    /// <summary>Several sequences prefilled in one call (some after a prompt chunk of their own, of different lengths,
    /// one past the GPU prefill's chunk when several pass) equal each prefilled alone, and so do their next steps.</summary>
    private static Check BatchedPrefill(IInferenceEngine engine, double tolerance)
    {
        var c = engine.Config;
        var none = new Dictionary<string, string>();
        string[] methods = ["dense", "quest", "tidal", "dense"];
        int[] first = [0, 5, 9, 1], rest = [20, 45, 7, 70];
        var together = new List<IDecodeSequence>();
        var alone = new List<IDecodeSequence>();
        var runs = new List<ReadOnlyMemory<int>>();
        double worst = 0;
        try
        {
            for (int i = 0; i < methods.Length; i++)
            {
                var plan = engine.PlanFor(SelectorSpec.Parse(methods[i], "16", none));
                var prompt = Tokens(first[i] + rest[i], c.VocabSize, 20 + i);
                together.Add(engine.CreateSequence(96, plan));
                alone.Add(engine.CreateSequence(96, plan));
                together[i].Prefill(prompt.AsSpan(0, first[i]));
                alone[i].Prefill(prompt);
                runs.Add(prompt.AsMemory(first[i]));
            }
            engine.PrefillBatch(together, runs);
            var next = Tokens(methods.Length, c.VocabSize, 30);
            for (int i = 0; i < methods.Length; i++)
            {
                worst = Math.Max(worst, together[i].Length != alone[i].Length ? double.PositiveInfinity : Difference(alone[i].Logits, together[i].Logits));
                together[i].Decode(next[i]);
                alone[i].Decode(next[i]);
                worst = Math.Max(worst, Difference(alone[i].Logits, together[i].Logits));
            }
        }
        finally
        {
            foreach (var s in together.Concat(alone)) s.Dispose();
        }
        return new Check($"batched prefill = each sequence prefilled alone ({methods.Length} sequences, {string.Join("/", rest)} tokens), and their next steps", worst, tolerance);
    }

    /// <summary>Methods whose plans carry state between steps, which speculative decoding rolls back, and Quest,
    /// whose page summaries the dense rewrite recomputes.</summary>
    private static readonly string[] RollbackMethods = ["lfps", "prhs", "hshare", "quest"];

    /// <summary>Speculative decoding's dense pass of several tokens: each row equals a dense decode step of its token
    /// after the ones before it, and the keys and values it writes are theirs (the next step agrees too).</summary>
    private static Check DensePassRows(IInferenceEngine engine, double tolerance)
    {
        var c = engine.Config;
        var prompt = Tokens(30, c.VocabSize, 11);
        var run = Tokens(6, c.VocabSize, 12);
        using var pass = engine.CreateSequence(64);
        using var steps = engine.CreateSequence(64);
        pass.Prefill(prompt);
        steps.Prefill(prompt);
        var rows = new float[5 * c.VocabSize];
        ((ISpeculativeSequence)pass).DecodeDense(run.AsSpan(0, 5), rows);
        double worst = pass.Length == 35 ? 0 : double.PositiveInfinity;
        for (int i = 0; i < 5; i++)
        {
            steps.Decode(run[i]);
            worst = Math.Max(worst, Difference(steps.Logits, rows.AsSpan(i * c.VocabSize, c.VocabSize)));
        }
        worst = Math.Max(worst, Difference(steps.Logits, pass.Logits));
        pass.Decode(run[5]);
        steps.Decode(run[5]);
        worst = Math.Max(worst, Difference(steps.Logits, pass.Logits));
        return new Check("dense pass of 5 tokens = their dense decode steps one by one (speculative verification)", worst, tolerance);
    }

    /// <summary>The dense passes of several sequences in one call (<see cref="IInferenceEngine.DecodeDenseBatch"/>) equal
    /// each sequence's pass alone, and so do their next steps.</summary>
    private static Check DensePassBatch(IInferenceEngine engine, double tolerance)
    {
        var c = engine.Config;
        int[] lengths = [3, 5, 1, 4];
        var together = new List<IDecodeSequence>();
        var alone = new List<IDecodeSequence>();
        var runs = new List<ReadOnlyMemory<int>>();
        var rows = new List<Memory<float>>();
        double worst = 0;
        try
        {
            for (int i = 0; i < lengths.Length; i++)
            {
                var prompt = Tokens(25 + 3 * i, c.VocabSize, 40 + i);
                together.Add(engine.CreateSequence(64));
                alone.Add(engine.CreateSequence(64));
                together[i].Prefill(prompt);
                alone[i].Prefill(prompt);
                runs.Add(Tokens(lengths[i], c.VocabSize, 50 + i));
                rows.Add(new float[lengths[i] * c.VocabSize]);
            }
            engine.DecodeDenseBatch(together, runs, rows);
            for (int i = 0; i < lengths.Length; i++)
            {
                var own = new float[lengths[i] * c.VocabSize];
                ((ISpeculativeSequence)alone[i]).DecodeDense(runs[i].Span, own);
                worst = Math.Max(worst, together[i].Length != alone[i].Length ? double.PositiveInfinity : Difference(own, rows[i].Span));
                together[i].Decode(7 % c.VocabSize);
                alone[i].Decode(7 % c.VocabSize);
                worst = Math.Max(worst, Difference(alone[i].Logits, together[i].Logits));
            }
        }
        finally
        {
            foreach (var s in together.Concat(alone)) s.Dispose();
        }
        return new Check($"dense passes of {lengths.Length} sequences in one call = each alone ({string.Join("/", lengths)} tokens), and their next steps", worst, tolerance);
    }

    /// <summary>Draft steps forgotten: a plan's state saved, two steps decoded, the sequence truncated and the state
    /// restored, then decoding goes on exactly as if those steps never ran.</summary>
    private static Check PlanRollback(IInferenceEngine engine)
    {
        var c = engine.Config;
        var none = new Dictionary<string, string>();
        var prompt = Tokens(40, c.VocabSize, 13);
        var next = Tokens(6, c.VocabSize, 14);
        double worst = 0;
        string at = "";
        foreach (var method in RollbackMethods)
        {
            var plan = engine.PlanFor(SelectorSpec.Parse(method, "16", none));
            using var drafted = engine.CreateSequence(64, plan);
            using var straight = engine.CreateSequence(64, plan);
            drafted.Prefill(prompt);
            straight.Prefill(prompt);
            drafted.Decode(next[0]);
            straight.Decode(next[0]);
            var checkpoints = (ISpeculativeSequence)drafted;
            checkpoints.SavePlanState(0);
            drafted.Decode(next[4]);
            drafted.Decode(next[5]);
            drafted.Truncate(41);
            checkpoints.RestorePlanState(0);
            for (int i = 1; i < 4; i++)
            {
                drafted.Decode(next[i]);
                straight.Decode(next[i]);
                double d = Difference(straight.Logits, drafted.Logits);
                if (d > worst || double.IsNaN(d)) (worst, at) = (d, method);
            }
        }
        return new Check($"plan state restored after forgotten steps continues as if they never ran ({string.Join(", ", RollbackMethods)}{(at == "" ? "" : $"; largest: {at}")})", worst, 0);
    }

    /// <summary>Greedy self-speculative decoding with each method as the draft gives dense greedy decoding's tokens.
    /// Measured: where the two first differ, the gap between dense's two most likely tokens there (0 when all agree),
    /// so a difference is allowed only at a near-tie that the allowed rounding (`tolerance`) can swap.</summary>
    private static Check SpeculativeGreedy(IInferenceEngine engine, double tolerance)
    {
        const int Generated = 24;
        var c = engine.Config;
        var none = new Dictionary<string, string>();
        var prompt = Tokens(30, c.VocabSize, 15);
        var reference = new List<int>();
        var gaps = new List<double>();
        using (var dense = engine.CreateSequence(64))
        {
            dense.Prefill(prompt);
            for (int i = 0; i < Generated; i++)
            {
                int t = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(dense.Logits);
                reference.Add(t);
                gaps.Add(TopTwoGap(dense.Logits));
                dense.Decode(t);
            }
        }
        double worst = 0;
        string at = "";
        foreach (var method in BatchMethods.Distinct().Where(m => m != "dense"))
        {
            var plan = engine.PlanFor(SelectorSpec.Parse(method, "16", none))!;
            using var seq = engine.CreateSequence(64, plan);
            seq.Prefill(prompt);
            var tokens = new List<int>();
            new SpeculativeDecoder(c.VocabSize, new SpeculationOptions(4)).Run(seq, plan, new Sampler(SamplingOptions.Greedy), Generated, [], tokens);
            int first = Enumerable.Range(0, Generated).FirstOrDefault(i => i >= tokens.Count || tokens[i] != reference[i], -1);
            double d = first < 0 ? 0 : first < tokens.Count ? gaps[first] : double.PositiveInfinity;
            if (d > worst) (worst, at) = (d, $"{method} at token {first}");
        }
        return new Check($"greedy speculative decoding (K = 4, each method drafting) = dense greedy decoding, {Generated} tokens{(at == "" ? "" : $" (first difference: {at}, dense's top-two gap there)")}", worst, tolerance);
    }

    private static double TopTwoGap(ReadOnlySpan<float> logits)
    {
        float first = float.NegativeInfinity, second = float.NegativeInfinity;
        foreach (float x in logits)
            if (x > first) (second, first) = (first, x);
            else if (x > second) second = x;
        return first - second;
    }

    private static int[] Tokens(int n, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
    }

    /// <summary>Methods of the batched check: a row of each, two or three of some (rows of one plan share its buffers
    /// and keep their own state; three rows, or two of three, are padded to a part of four on the GPU).</summary>
    private static readonly string[] BatchMethods =
        ["dense", "dense", "dense", "oracle", "quest", "quest", "quest", "tidal", "tidal", "tidal", "lfps", "lfps", "prhs", "streaming", "hshare"];

    /// <summary>Sequence slots the checks need: every batched method twice (in the batch and alone).</summary>
    public static int Slots => 2 * BatchMethods.Length;

    private static (Check Dense, Check Sparse) BatchedStep(IInferenceEngine engine, double tolerance, double sparseTolerance)
    {
        var c = engine.Config;
        var none = new Dictionary<string, string>();
        // one plan object per method: the rows of a method share it, as the server's requests of one setting do
        var plans = BatchMethods.Distinct().ToDictionary(m => m, m => engine.PlanFor(SelectorSpec.Parse(m, "16", none)));
        int n = BatchMethods.Length;
        var together = new List<IDecodeSequence>();
        var alone = new List<IDecodeSequence>();
        var batch = new List<IDecodeSequence>();
        var tokens = new List<int>();
        // the largest difference and where, over dense rows [0] and rows with a plan [1]
        var worst = new double[2];
        var worstAt = new[] { "", "" };
        try
        {
            for (int i = 0; i < n; i++)
            {
                var prompt = Tokens(20 + 2 * i, c.VocabSize, i);
                together.Add(engine.CreateSequence(64, plans[BatchMethods[i]]));
                together[i].Prefill(prompt);
                alone.Add(engine.CreateSequence(64, plans[BatchMethods[i]]));
                alone[i].Prefill(prompt);
            }
            var next = Tokens(6 * n, c.VocabSize, 99);
            for (int step = 0; step < 6; step++)
            {
                // sequences leave and rejoin the batch from step to step, so each meets other rows and other row numbers
                batch.Clear();
                tokens.Clear();
                for (int i = 0; i < n; i++)
                    if (step < 2 || (i + step) % 3 != 0)
                    {
                        batch.Add(together[i]);
                        tokens.Add(next[step * n + i]);
                    }
                engine.DecodeBatch(batch, tokens.ToArray());
                for (int i = 0; i < n; i++)
                {
                    if (!batch.Contains(together[i])) continue;
                    alone[i].Decode(next[step * n + i]);
                    double d = together[i].Length != alone[i].Length ? double.PositiveInfinity : Difference(alone[i].Logits, together[i].Logits);
                    int k = BatchMethods[i] == "dense" ? 0 : 1;
                    if (d > worst[k] || double.IsNaN(d)) (worst[k], worstAt[k]) = (d, $"{BatchMethods[i]} row {i}, step {step}");
                }
            }
        }
        finally
        {
            foreach (var s in together.Concat(alone)) s.Dispose();
        }
        string rowsSaid = $"{n} rows of {string.Join(", ", BatchMethods.Distinct())}, joining and leaving";
        return (new Check($"batched step = each sequence alone, dense rows ({rowsSaid}; largest: {worstAt[0]})", worst[0], tolerance),
            new Check($"batched step = each sequence alone, rows with a plan ({rowsSaid}; largest: {worstAt[1]})", worst[1], sparseTolerance));
    }

    /// <summary>Two engines of one model that differ only in how their KV cache memory is held (allocated whole, or
    /// mapped per sequence from a page pool) give the same logits: dense, Quest (page summaries) and TidalDecode
    /// sequences prefilled, a dense prefill forked into Quest (whose summaries the fork must make), then decoded.</summary>
    public static Check SameLogits(IInferenceEngine a, IInferenceEngine b, string name)
    {
        var none = new Dictionary<string, string>();
        var prompt = Tokens(40, a.Config.VocabSize, 11);
        var next = Tokens(8, a.Config.VocabSize, 12);
        double worst = 0;
        foreach (string method in (string[])["dense", "quest", "tidal", "dense>quest"])
        {
            var sequences = new List<IDecodeSequence>();
            try
            {
                foreach (var engine in (IInferenceEngine[])[a, b])
                {
                    var target = engine.PlanFor(SelectorSpec.Parse(method.Split('>')[^1], "16", none));
                    bool fork = method.Contains('>');
                    var seq = engine.CreateSequence(64, fork ? null : target);
                    seq.Prefill(prompt);
                    if (fork)
                    {
                        var forked = seq.Fork(64, target);
                        seq.Dispose();
                        seq = forked;
                    }
                    sequences.Add(seq);
                }
                worst = Math.Max(worst, Difference(sequences[0].Logits, sequences[1].Logits));
                foreach (int t in next)
                {
                    sequences[0].Decode(t);
                    sequences[1].Decode(t);
                    worst = Math.Max(worst, Difference(sequences[0].Logits, sequences[1].Logits));
                }
            }
            finally
            {
                foreach (var s in sequences) s.Dispose();
            }
        }
        return new Check(name, worst, 0);
    }

    /// <summary>Sequences give back every page of the engine's KV cache pool when they end, and an engine with too few
    /// free pages says so before making a sequence: largest difference in free bytes, 0 allowed (trivially 0 where
    /// the engine has no pool).</summary>
    public static Check PoolReturns(IInferenceEngine engine)
    {
        var none = new Dictionary<string, string>();
        long before = engine.KvPool.Free;
        var held = new List<IDecodeSequence>();
        double worst = 0;
        try
        {
            foreach (string method in (string[])["dense", "quest", "tidal", "dense", "quest"])
            {
                var plan = engine.PlanFor(SelectorSpec.Parse(method, "16", none));
                if (!engine.HasRoomFor(96, plan)) break;
                var seq = engine.CreateSequence(96, plan);
                held.Add(seq);
                seq.Prefill(Tokens(30, engine.Config.VocabSize, held.Count));
                if (!engine.HasRoomFor(96)) break;
                held.Add(seq.Fork(96));
            }
            if (engine.KvPool.Total > 0 && held.Count == 0) worst = double.PositiveInfinity;
        }
        finally
        {
            foreach (var s in held) s.Dispose();
        }
        worst = Math.Max(worst, Math.Abs(engine.KvPool.Free - before));
        return new Check("every page of the KV cache pool comes back when sequences end", worst, 0);
    }

    /// <summary>A copy of a sequence's first `length` positions made by <see cref="IDecodeSequence.ForkPrefix"/> (which
    /// may share the source's memory) continues like a sequence prefilled with only those positions, for dense
    /// attention and for Quest (whose page summaries the copy must have), while the source lives; the pool gets every
    /// page back once both end. The source holds `tail` positions more; the copy and the other go on with `tail`
    /// tokens. `length` a multiple of the prefill chunk, so both prefills run the same chunks.</summary>
    public static Check SharedPrefix(IInferenceEngine engine, int length, int tail, double tolerance)
    {
        var none = new Dictionary<string, string>();
        var prompt = Tokens(length + tail, engine.Config.VocabSize, 13);
        var more = Tokens(tail, engine.Config.VocabSize, 14);
        long before = engine.KvPool.Free;
        double worst = 0;
        foreach (string method in (string[])["dense", "quest"])
        {
            var plan = engine.PlanFor(SelectorSpec.Parse(method, "64", none));
            int capacity = length + more.Length + 16;
            using var source = engine.CreateSequence(prompt.Length);
            source.Prefill(prompt);
            using var copy = source.ForkPrefix(length, capacity, plan);
            using var alone = engine.CreateSequence(capacity, plan);
            alone.Prefill(prompt.AsSpan(0, length));
            copy.Prefill(more);
            alone.Prefill(more);
            worst = Math.Max(worst, copy.Length == alone.Length ? Difference(alone.Logits, copy.Logits) : double.PositiveInfinity);
            foreach (int t in more.AsSpan(0, 8))
            {
                copy.Decode(t);
                alone.Decode(t);
                worst = Math.Max(worst, Difference(alone.Logits, copy.Logits));
            }
        }
        if (engine.KvPool.Free != before) worst = double.PositiveInfinity;
        return new Check($"a copy of a prefix ({length} positions, memory shared where the cache is on demand) continues like that prefix prefilled alone; every page comes back", worst, tolerance);
    }

    private static Check Fork(IInferenceEngine engine)
    {
        var c = engine.Config;
        using var original = engine.CreateSequence(96);
        original.Prefill(Tokens(40, c.VocabSize, 5));
        using var copy = original.Fork(80);
        double worst = copy.Length == 40 && copy.Capacity == 80 ? Difference(original.Logits, copy.Logits) : double.PositiveInfinity;
        foreach (int t in Tokens(12, c.VocabSize, 6))
        {
            original.Decode(t);
            copy.Decode(t);
            worst = Math.Max(worst, Difference(original.Logits, copy.Logits));
        }
        return new Check("fork continues like the original", worst, 0);
    }

    private static Check Truncate(IInferenceEngine engine)
    {
        var c = engine.Config;
        var prompt = Tokens(50, c.VocabSize, 7);
        using var cut = engine.CreateSequence(64);
        cut.Prefill(prompt);
        cut.Truncate(30);
        using var shorter = engine.CreateSequence(64);
        shorter.Prefill(prompt.AsSpan(0, 30));
        double worst = cut.Length == 30 ? 0 : double.PositiveInfinity;
        foreach (int t in Tokens(6, c.VocabSize, 8))
        {
            cut.Decode(t);
            shorter.Decode(t);
            worst = Math.Max(worst, Difference(shorter.Logits, cut.Logits));
        }
        return new Check("truncated sequence continues like a shorter prefill", worst, 0);
    }

    private static double Difference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) return double.PositiveInfinity;
        double worst = 0;
        for (int i = 0; i < a.Length; i++) worst = Math.Max(worst, Math.Abs(a[i] - b[i]));
        return double.IsNaN(worst) ? double.PositiveInfinity : worst;
    }
}
