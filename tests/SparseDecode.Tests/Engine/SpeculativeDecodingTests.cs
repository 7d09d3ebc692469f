using SparseDecode.Cpu;
using SparseDecode.Engine;
using SparseDecode.Selection;
using Xunit.Abstractions;

namespace SparseDecode.Tests.EngineChecks;

/// <summary>Self-speculative decoding (<see cref="SpeculativeDecoder"/>): the CPU's dense multi-token pass is the
/// decode step's arithmetic bit for bit, greedy output equals dense decoding token for token for every drafting
/// method and draft length (budgets, full caches and stop tokens included), the plan's state is rolled back so that
/// it never names a dropped position, and speculative sampling's rule yields the target distribution.</summary>
public sealed class SpeculativeDecodingTests(ITestOutputHelper output)
{
    private static readonly Dictionary<string, string> None = [];

    private static int[] Prompt(int length, int vocab, int seed)
    {
        var rng = new Random(seed);
        // a repeated motif, so that the model's continuation is not noise and sparse drafts are often right
        var motif = Enumerable.Range(0, 23).Select(_ => rng.Next(2, vocab)).ToArray();
        return Enumerable.Range(0, length).Select(i => i % 97 < 5 ? rng.Next(2, vocab) : motif[i % motif.Length]).ToArray();
    }

    private static void AssertBitEqual(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int v = 0; v < expected.Length; v++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[v]) == BitConverter.SingleToInt32Bits(actual[v]),
                $"{what}, logit {v}: {actual[v]:R} vs {expected[v]:R}");
    }

    [Theory]
    [InlineData("llama3-gqa")]
    [InlineData("llama3-gqa-bf16")]
    [InlineData("mistral-f16")]
    [InlineData("qwen2-bias-tied")]
    [InlineData("")]
    public void TheDenseMultiTokenPassIsTheDecodeStepBitForBit(string fixture)
    {
        using var engine = CpuEngine.Load(fixture.Length == 0 ? Fixtures.BundledModel : Fixtures.Model(fixture));
        IInferenceEngine e = engine;
        int vocab = e.Config.VocabSize;
        var prompt = Prompt(41, vocab, 3);
        int[] pass = [5, 17, 9, 30, 2, 11, 7];
        using var steps = e.CreateSequence(64);
        // the pass runs on a sequence with a sparse plan: the plan must play no part in it
        using var rows = e.CreateSequence(64, e.PlanFor(SelectorSpec.Parse("lfps", "8", None)));
        steps.Prefill(prompt);
        rows.Prefill(prompt);
        var logits = new float[pass.Length * vocab];
        ((ISpeculativeSequence)rows).DecodeDense(pass, logits);
        Assert.Equal(prompt.Length + pass.Length, rows.Length);
        for (int i = 0; i < pass.Length; i++)
        {
            steps.Decode(pass[i]);
            AssertBitEqual(steps.Logits, logits.AsSpan(i * vocab, vocab), $"row {i}");
        }
        AssertBitEqual(steps.Logits, rows.Logits, "the sequence's logits after the pass");
        // the keys and values written are the decode steps' too: the next dense pass of one row agrees again
        steps.Decode(4);
        ((ISpeculativeSequence)rows).DecodeDense([4], logits);
        AssertBitEqual(steps.Logits, logits.AsSpan(0, vocab), "the step after the pass");
    }

    /// <summary>Dense decoding's tokens and finish reason, as <see cref="Generator"/> produces them, on a sequence of
    /// the given capacity.</summary>
    private static (List<int> Tokens, string Reason) Dense(IInferenceEngine e, int[] prompt, int capacity, int maxTokens, int[] stop)
    {
        using var s = e.CreateSequence(capacity);
        s.Prefill(prompt);
        var sampler = new Sampler(SamplingOptions.Greedy);
        var tokens = new List<int>();
        while (tokens.Count < maxTokens)
        {
            int next = sampler.Next(s.Logits);
            tokens.Add(next);
            if (stop.Contains(next)) return (tokens, "stop");
            if (tokens.Count == maxTokens || s.Length >= capacity) break;
            s.Decode(next);
        }
        return (tokens, "length");
    }

    /// <summary>Speculative decoding on a sequence of the given capacity, checking after every kept token that the
    /// plan's state names no position at or past the sequence's length.</summary>
    private static (List<int> Tokens, string Reason, SpeculationStats Stats) Speculative(IInferenceEngine e, int[] prompt, int capacity,
        int maxTokens, int[] stop, string method, string budget, SpeculationOptions options, SamplingOptions? sampling = null)
    {
        var plan = e.PlanFor(SelectorSpec.Parse(method, budget, None))!;
        using var s = e.CreateSequence(capacity, plan);
        s.Prefill(prompt);
        var decoder = new SpeculativeDecoder(e.Config.VocabSize, options);
        var tokens = new List<int>();
        var ops = ((CpuSequence)s).PlanOps!;
        string reason = decoder.Run(s, plan, new Sampler(sampling ?? SamplingOptions.Greedy), maxTokens, stop, tokens,
            _ => Assert.True(ops.HighestStatePosition() < s.Length,
                $"{method}: the plan's state names position {ops.HighestStatePosition()} of a sequence of {s.Length}"));
        Assert.True(s.Length <= capacity);
        return (tokens, reason, decoder.Stats);
    }

    [Theory]
    [InlineData("tidal")]
    [InlineData("lfps")]
    [InlineData("prhs")]
    [InlineData("hshare")]
    [InlineData("quest")]
    [InlineData("streaming")]
    [InlineData("oracle")]
    public void GreedyOutputIsDenseDecodingsTokenForToken(string method)
    {
        using var engine = CpuEngine.Load(Fixtures.BundledModel);
        IInferenceEngine e = engine;
        var prompt = Prompt(300, e.Config.VocabSize, 7);
        const int maxTokens = 40;
        var (dense, denseReason) = Dense(e, prompt, prompt.Length + maxTokens, maxTokens, []);
        long drafted = 0, accepted = 0;
        foreach (var options in new[] { new SpeculationOptions(1), new SpeculationOptions(3), new SpeculationOptions(8), new SpeculationOptions(16), new SpeculationOptions(4, Adaptive: true) })
            // a small budget, so that drafts are rejected and the rollback runs
            foreach (string budget in (string[])["12", "25%"])
            {
                var (tokens, reason, stats) = Speculative(e, prompt, prompt.Length + maxTokens, maxTokens, [], method, budget, options);
                output.WriteLine($"{method} budget {budget} K={options}: {stats.Passes} passes, {stats.AcceptanceRate:P0} of {stats.Drafted} drafts kept");
                Assert.Equal(dense, tokens);
                Assert.Equal(denseReason, reason);
                Assert.True(stats.Exact);
                drafted += stats.Drafted;
                accepted += stats.Accepted;
            }
        // the drafts are the method's own: some kept, and (at 12 keys) some rejected, so both paths ran
        Assert.InRange(accepted, 1, drafted - 1);
    }

    /// <summary>The same guarantee on every fixture checkpoint — grouped and full multi-head attention, a head
    /// dimension apart from the hidden size's share, bf16 and f16 weights, biases and tied embeddings — with every
    /// sparse method drafting, K fixed and adaptive. Their weights are random, so drafts are rejected often and the
    /// rollback runs on every one.</summary>
    [Theory]
    [InlineData("llama3-gqa")]
    [InlineData("llama3-gqa-bf16")]
    [InlineData("mistral-f16")]
    [InlineData("mistral-mha-headdim")]
    [InlineData("qwen2-bias-tied")]
    public void GreedyOutputIsDenseDecodingsOnEveryFixture(string fixture)
    {
        using var engine = CpuEngine.Load(Fixtures.Model(fixture));
        IInferenceEngine e = engine;
        var prompt = Prompt(150, e.Config.VocabSize, 11);
        const int maxTokens = 40;
        var (dense, denseReason) = Dense(e, prompt, prompt.Length + maxTokens, maxTokens, []);
        foreach (string method in (string[])["oracle", "streaming", "quest", "tidal", "lfps", "prhs", "hshare"])
        {
            long drafted = 0, accepted = 0;
            foreach (var options in new[] { new SpeculationOptions(2), new SpeculationOptions(5), new SpeculationOptions(4, Adaptive: true) })
            {
                var (tokens, reason, stats) = Speculative(e, prompt, prompt.Length + maxTokens, maxTokens, [], method, "16", options);
                Assert.True(dense.SequenceEqual(tokens), $"{fixture}, {method}, K={options}: [{string.Join(",", tokens)}] is not dense decoding's [{string.Join(",", dense)}]");
                Assert.Equal(denseReason, reason);
                Assert.True(stats.Exact);
                drafted += stats.Drafted;
                accepted += stats.Accepted;
            }
            output.WriteLine($"{fixture} {method}: {accepted} of {drafted} draft tokens kept");
            Assert.True(drafted > 0, $"{method} drafted nothing on {fixture}");
        }
    }

    [Fact]
    public void BudgetsFullCachesAndStopTokensEndWhereDenseDecodingEnds()
    {
        using var engine = CpuEngine.Load(Fixtures.BundledModel);
        IInferenceEngine e = engine;
        var prompt = Prompt(200, e.Config.VocabSize, 5);
        var (longRun, _) = Dense(e, prompt, prompt.Length + 30, 30, []);
        int stopToken = longRun[11];
        foreach (string method in (string[])["tidal", "lfps", "prhs"])
            foreach (int k in (int[])[2, 16])
            {
                var options = new SpeculationOptions(k);
                // K above what the budget leaves, down to one token and none
                foreach (int max in (int[])[0, 1, 2, 5])
                {
                    var d = Dense(e, prompt, prompt.Length + Math.Max(1, max), max, []);
                    var s = Speculative(e, prompt, prompt.Length + Math.Max(1, max), max, [], method, "12", options);
                    Assert.Equal(d.Tokens, s.Tokens);
                    Assert.Equal(d.Reason, s.Reason);
                }
                // a cache that fills before the budget is spent
                foreach (int room in (int[])[1, 2, 7])
                {
                    var d = Dense(e, prompt, prompt.Length + room, 50, []);
                    var s = Speculative(e, prompt, prompt.Length + room, 50, [], method, "12", options);
                    Assert.Equal(d.Tokens, s.Tokens);
                    Assert.Equal("length", s.Reason);
                }
                // a stop token among the drafts
                var ds = Dense(e, prompt, prompt.Length + 30, 30, [stopToken]);
                var ss = Speculative(e, prompt, prompt.Length + 30, 30, [stopToken], method, "12", options);
                Assert.Equal("stop", ds.Reason);
                Assert.Equal(ds.Tokens, ss.Tokens);
                Assert.Equal("stop", ss.Reason);
            }
    }

    /// <summary>Top-k 1 makes sampling deterministic (the target and draft distributions are single tokens), so the
    /// sampling path — distributions, the acceptance rule, the residual — must give dense greedy output exactly.</summary>
    [Fact]
    public void SamplingWithOneKeptTokenIsGreedyDenseDecoding()
    {
        using var engine = CpuEngine.Load(Fixtures.BundledModel);
        IInferenceEngine e = engine;
        var prompt = Prompt(250, e.Config.VocabSize, 9);
        var (dense, _) = Dense(e, prompt, prompt.Length + 30, 30, []);
        var s = Speculative(e, prompt, prompt.Length + 30, 30, [], "tidal", "12", new SpeculationOptions(4),
            new SamplingOptions(Temperature: 0.8f, TopK: 1, Seed: 3));
        Assert.Equal(dense, s.Tokens);
        Assert.True(s.Stats.Drafted > s.Stats.Accepted, "some drafts must be rejected for the residual to run");
    }

    /// <summary>The acceptance rule on a vocabulary of four: with x drawn from q and kept with probability
    /// min(1, p(x)/q(x)), else replaced by a draw from norm(max(0, p − q)), the output is distributed as p
    /// (chi-square, 3 degrees of freedom, below the 0.1% critical value 16.27) and the acceptance rate is
    /// Σ min(p, q) = 0.6. Always keeping the draft would give q: χ² in the tens of thousands.</summary>
    [Fact]
    public void SpeculativeSamplingYieldsTheTargetDistribution()
    {
        float[] p = [0.5f, 0.2f, 0.2f, 0.1f], q = [0.1f, 0.4f, 0.3f, 0.2f];
        var sampler = new Sampler(new SamplingOptions(Temperature: 1, Seed: 12345));
        var residual = new float[4];
        var counts = new long[4];
        const int trials = 200_000;
        long kept = 0;
        for (int i = 0; i < trials; i++)
        {
            int x = sampler.Draw(q);
            int token = SpeculativeDecoder.AcceptOrResample(p, q, x, sampler, residual, out bool accepted);
            counts[token]++;
            if (accepted)
            {
                kept++;
                Assert.Equal(x, token);
            }
        }
        double chi2 = 0;
        for (int v = 0; v < 4; v++) chi2 += Math.Pow(counts[v] - trials * p[v], 2) / (trials * p[v]);
        double rate = (double)kept / trials, sigma = Math.Sqrt(0.6 * 0.4 / trials);
        output.WriteLine($"counts {string.Join(", ", counts)}; chi-square {chi2:F2}; kept {rate:F4}");
        Assert.True(chi2 < 16.27, $"chi-square {chi2:F2} ≥ 16.27: the output is not distributed as p");
        Assert.InRange(rate, 0.6 - 4 * sigma, 0.6 + 4 * sigma);
    }

    [Fact]
    public void TheSamplersDistributionIsWhatItDrawsFrom()
    {
        float[] logits = [2f, 1f, 0.5f, -1f, 3f];
        var probs = new float[5];
        new Sampler(new SamplingOptions(Temperature: 0.7f, TopK: 3)).Distribution(logits, probs);
        Assert.Equal(0f, probs[2]); // outside the top 3
        Assert.Equal(0f, probs[3]);
        Assert.Equal(1.0, probs.Sum(), 5);
        double z = Math.Exp(3 / 0.7) + Math.Exp(2 / 0.7) + Math.Exp(1 / 0.7);
        Assert.Equal(Math.Exp(3 / 0.7) / z, probs[4], 5);
        var sampler = new Sampler(new SamplingOptions(Temperature: 0.7f, TopK: 3, Seed: 1));
        var counts = new int[5];
        for (int i = 0; i < 20_000; i++) counts[sampler.Next(logits)]++;
        for (int v = 0; v < 5; v++) Assert.InRange(counts[v] / 20_000.0, probs[v] - 0.02, probs[v] + 0.02);
        new Sampler(SamplingOptions.Greedy).Distribution(logits, probs);
        Assert.Equal([0f, 0f, 0f, 0f, 1f], probs);
    }

    /// <summary>A checkpoint of the plan's state, some steps, the checkpoint back and the cache truncated: the next
    /// step is the step the sequence would have taken without the forgotten ones, bit for bit.</summary>
    [Theory]
    [InlineData("lfps")]
    [InlineData("prhs")]
    [InlineData("hshare")]
    [InlineData("quest")]
    public void ARestoredCheckpointForgetsTheStepsAfterIt(string method)
    {
        using var engine = CpuEngine.Load(Fixtures.BundledModel);
        IInferenceEngine e = engine;
        var prompt = Prompt(180, e.Config.VocabSize, 4);
        var plan = e.PlanFor(SelectorSpec.Parse(method, "12", None))!;
        using var a = e.CreateSequence(220, plan);
        using var b = e.CreateSequence(220, plan);
        a.Prefill(prompt);
        b.Prefill(prompt);
        foreach (int t in (int[])[3, 8]) { a.Decode(t); b.Decode(t); }
        var spec = (ISpeculativeSequence)a;
        spec.SavePlanState(2);
        int length = a.Length;
        foreach (int t in (int[])[40, 41, 42, 43, 44]) a.Decode(t);
        spec.RestorePlanState(2);
        a.Truncate(length);
        Assert.True(((CpuSequence)a).PlanOps!.HighestStatePosition() < a.Length);
        foreach (int t in (int[])[9, 10, 11])
        {
            a.Decode(t);
            b.Decode(t);
            AssertBitEqual(b.Logits, a.Logits, $"{method} after the restore, position {a.Length}");
        }
    }

    [Fact]
    public void BadSettingsAreRefusedWithOneSentence()
    {
        Assert.Contains("1 to 16", Assert.Throws<ArgumentException>(() => SpeculationOptions.Parse("0")).Message);
        Assert.Contains("1 to 16", Assert.Throws<ArgumentException>(() => SpeculationOptions.Parse("17")).Message);
        Assert.Contains("'x'", Assert.Throws<ArgumentException>(() => SpeculationOptions.Parse("x")).Message);
        Assert.True(SpeculationOptions.Parse("auto").Adaptive);
        using var engine = CpuEngine.Load(Fixtures.Model("llama3-gqa"));
        var generator = new Generator(engine);
        var ex = Assert.Throws<ArgumentException>(() => generator.Generate([1, 2, 3],
            new GenerationOptions { Method = SelectorSpec.Parse("dense", "16", None), Speculation = new SpeculationOptions(4) }));
        Assert.Contains("sparse method", ex.Message);
        // through the generator: the same tokens as dense, and the pass's statistics
        var dense = generator.Generate([1, 2, 3, 4, 5], new GenerationOptions { MaxTokens = 12 });
        var spec = generator.Generate([1, 2, 3, 4, 5],
            new GenerationOptions { MaxTokens = 12, Method = SelectorSpec.Parse("tidal", "4", None), Speculation = new SpeculationOptions(3) });
        Assert.Equal(dense.Tokens, spec.Tokens);
        Assert.NotNull(spec.Speculation);
        Assert.True(spec.Speculation!.Passes > 0);
    }

    /// <summary>TidalDecode's cache correction (`correct` = T): every T sparse steps their tokens and the next run
    /// densely, so the token chosen right after each refill is the one dense decoding of the same prefix chooses
    /// (the whole cache is then dense attention's). Between refills the method's own choices may differ.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(6)]
    public void TidalCacheCorrectionRefillsWithDenseAttention(int interval)
    {
        using var engine = CpuEngine.Load(Fixtures.BundledModel);
        IInferenceEngine e = engine;
        var prompt = Prompt(260, e.Config.VocabSize, 13);
        var spec = SelectorSpec.Parse("tidal", "4", new Dictionary<string, string> { ["correct"] = interval.ToString() });
        Assert.Equal(interval, e.PlanFor(spec)!.CacheCorrection);
        var result = new Generator(e).Generate(prompt, new GenerationOptions { MaxTokens = 36, Method = spec });
        var tokens = result.Tokens;
        Assert.Equal(36, tokens.Length);
        // dense decoding's choice after every prefix of the output
        using var dense = e.CreateSequence(prompt.Length + tokens.Length);
        dense.Prefill(prompt);
        var sampler = new Sampler(SamplingOptions.Greedy);
        int differ = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            int choice = sampler.Next(dense.Logits);
            if (i % (interval + 1) == 0) Assert.True(choice == tokens[i], $"token {i}, right after a refill: {tokens[i]}, dense decoding chooses {choice}");
            else if (choice != tokens[i]) differ++;
            if (i + 1 < tokens.Length) dense.Decode(tokens[i]);
        }
        output.WriteLine($"correct={interval}: {differ} sparse choices differ from dense");
        if (interval > 1) Assert.True(differ > 0, "at 4 keys some sparse choices must differ, or the test shows nothing");
    }

    /// <summary>Speculative sampling end to end: four tokens (the first from the prefill, then passes of up to two
    /// drafts by an 18-key StreamingLLM window over 24 to 27 positions with the correction or the bonus) drawn 30,000 times with random seeds
    /// are distributed as dense sampling's — the exact joint probabilities p(t0)·p(t1 | t0)·p(t2 | t0 t1)·p(t3 | …)
    /// from dense decode steps, under temperature 1.5 and top-k 3 (81 outcomes; chi-square below the 0.1% critical
    /// value for 80 degrees of freedom, 124.84).</summary>
    [Fact]
    public void SampledOutputIsDistributedAsDenseSampling()
    {
        using var engine = CpuEngine.Load(Fixtures.Model("llama3-gqa"));
        IInferenceEngine e = engine;
        int vocab = e.Config.VocabSize;
        var prompt = Prompt(24, vocab, 21);
        var settings = new SamplingOptions(Temperature: 1.5f, TopK: 3);
        var plan = e.PlanFor(SelectorSpec.Parse("streaming", "18", None))!;
        const int length = 4;
        int capacity = prompt.Length + length;
        using var prefilled = e.CreateSequence(capacity);
        prefilled.Prefill(prompt);

        // the exact distribution of dense sampling over the four tokens, by dense decode steps along every prefix
        var exact = new Dictionary<string, double>();
        var probe = new Sampler(settings);
        void Walk(IDecodeSequence s, string prefix, double probability, int depth)
        {
            var p = new float[vocab];
            probe.Distribution(s.Logits, p);
            for (int t = 0; t < vocab; t++)
            {
                if (p[t] == 0) continue;
                if (depth == length - 1)
                {
                    exact[prefix + t] = probability * p[t];
                    continue;
                }
                using var next = s.Fork(capacity);
                next.Decode(t);
                Walk(next, prefix + t + ",", probability * p[t], depth + 1);
            }
        }
        Walk(prefilled, "", 1, 0);
        Assert.Equal(81, exact.Count);

        const int trials = 30_000;
        var counts = exact.Keys.ToDictionary(k => k, _ => 0);
        var decoder = new SpeculativeDecoder(vocab, new SpeculationOptions(2));
        var tokens = new List<int>(length);
        // seeds drawn at random: consecutive seeds start their generators' sequences alike
        var seeds = new Random(7);
        for (int i = 0; i < trials; i++)
        {
            using var s = prefilled.Fork(capacity, plan);
            tokens.Clear();
            decoder.Run(s, plan, new Sampler(settings with { Seed = (ulong)seeds.NextInt64() }), length, [], tokens);
            string key = string.Join(",", tokens);
            Assert.True(counts.ContainsKey(key), $"({key}) has probability 0 under dense sampling");
            counts[key]++;
        }
        double chi2 = exact.Sum(kv => Math.Pow(counts[kv.Key] - trials * kv.Value, 2) / (trials * kv.Value));
        var stats = decoder.Stats;
        output.WriteLine($"chi-square {chi2:F1} over {exact.Count} outcomes; {stats.AcceptanceRate:P1} of {stats.Drafted} drafts kept, {stats.TokensPerPass:F2} tokens per pass");
        Assert.True(chi2 < 124.84, $"chi-square {chi2:F1} ≥ 124.84: speculative samples are not distributed as dense sampling's");
        Assert.InRange(stats.AcceptanceRate, 0.05, 0.95); // both the acceptance and the residual draw ran
    }
}
