using System.Diagnostics;
using System.Text.Json.Nodes;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Evaluation;

/// <summary>Chooses a method's model-dependent setting the way its authors do — by a sweep — on calibration prompts
/// the evaluation never uses (their own seed range): TidalDecode's re-selection layer or PrHS's early-token freezing
/// ψ, by the mean log-probability
/// the model gives the right answer's tokens under the method (teacher-forced; the first answer token comes from the
/// dense prefill and is left out) — the smooth form of task accuracy. Attention-mass recall is reported beside it but
/// does not choose: a re-selection layer is itself dense, so the mean recall rewards making the hardest layer dense
/// (on the bundled model it prefers the last layer, which then re-selects for no layer at all). Each prompt is
/// prefilled once; every candidate decodes from a copy.</summary>
public static class Calibration
{
    /// <summary>Base of the calibration prompts' seeds: the evaluation grid's seeds derive from its own base.</summary>
    public const int SeedBase = 0x5EED_CA1;

    public static readonly string[] Tasks = [RulerTasks.Passkey, RulerTasks.MultiKey, RulerTasks.MultiValue, RulerTasks.VarTrack];

    /// <summary>One candidate setting and what it measured; ScoredShare: keys scored per step, layer and head as a
    /// share of the context (the index cost).</summary>
    public sealed record Candidate(string Value, double AnswerLogProb, double MassRecall, double KeysRead, double ScoredShare = 0);

    /// <summary>Parameter "a,b" with values "x;y" sweeps two settings together.</summary>
    public sealed record Result(string Method, string Parameter, string Chosen, IReadOnlyList<Candidate> Candidates,
        int Prompts, int Context, string Budget)
    {
        public IReadOnlyDictionary<string, string> Settings => SettingsOf(Parameter, Chosen);

        public JsonObject Provenance()
        {
            var lp = new JsonObject();
            var mr = new JsonObject();
            foreach (var x in Candidates)
            {
                lp[x.Value] = Math.Round(x.AnswerLogProb, 5);
                mr[x.Value] = Math.Round(x.MassRecall, 5);
            }
            return new JsonObject
            {
                ["parameter"] = Parameter, ["chosen"] = Chosen,
                ["metric"] = "mean log-probability of the answer tokens after the first, teacher-forced",
                ["budget"] = Budget, ["context"] = Context, ["prompts"] = Prompts,
                ["tasks"] = string.Join(",", Tasks), ["seed_base"] = SeedBase, ["answer_logprob"] = lp, ["mass_recall"] = mr,
                ["max_scored_share"] = MaxScoredShare(Method) is double cap ? cap : null,
            };
        }
    }

    /// <summary>The methods calibrated and the setting each sweeps: TidalDecode's re-selection layer (every layer
    /// after the selection layer, or none), PrHS's early-token freezing ψ (1: no freezing) or recency φ, and LFPS's
    /// history length with its expansion radius.</summary>
    public static readonly string[] Methods = ["tidal", "prhs", "lfps"];

    /// <summary>The index cost a method's setting may have (keys scored per step, layer and head ÷ the context):
    /// LFPS learns from the past to score few keys, so a setting scoring more than 12% of them is not chosen (the
    /// best-scoring one is, when none qualifies).</summary>
    public static double? MaxScoredShare(string method) => method == "lfps" ? 0.12 : null;

    public static IReadOnlyDictionary<string, string> SettingsOf(string parameter, string value)
    {
        var names = parameter.Split(',');
        var values = value.Split(';');
        if (names.Length != values.Length) throw new ArgumentException($"'{value}' does not give {parameter}.");
        return names.Zip(values).ToDictionary(p => p.First, p => p.Second);
    }

    /// <summary>The setting of `method` a sweep chooses (`parameter` null: the method's first) and its candidates.</summary>
    public static (string Parameter, string[] Values) Candidates(string method, Model.ModelConfig config, string? parameter = null)
    {
        int start = MethodCatalog.Get("tidal").Defaults(config.NumLayers).Int("start");
        (string Parameter, string[] Values)[] settings = method switch
        {
            "tidal" => [("reselect", Enumerable.Range(start + 1, Math.Max(0, config.NumLayers - start - 1))
                .Select(l => l.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append("none").ToArray())],
            "prhs" => [("psi", ["0.2", "0.4", "0.6", "0.8", "1"]), ("phi", ["0.6", "0.8", "0.9", "1"])],
            "lfps" => [("history,radius", ["1;0", "1;1", "2;0", "2;1", "3;0"])],
            _ => throw new ArgumentException($"Calibration of '{method}' is not implemented; calibrated methods: {string.Join(", ", Methods)}."),
        };
        if (parameter is null) return settings[0];
        foreach (var x in settings)
            if (x.Parameter == parameter) return x;
        throw new ArgumentException($"Calibration of {method} sweeps {string.Join(" or ", settings.Select(x => x.Parameter))}, not '{parameter}'.");
    }

    /// <summary>The drafts `calibrate --speculate` compares by default: the methods that keep accuracy at small
    /// budgets (the founding ones) and Quest, each at K = 2, 4 and 8 draft tokens per pass.</summary>
    public static readonly string[] DraftMethods = ["tidal", "lfps", "prhs", "quest"];
    public static readonly int[] DraftLengths = [2, 4, 8];

    /// <summary>One draft (method at the sweep's budget, K tokens per pass) over the calibration prompts: what its
    /// speculative decoding kept, whether its output was dense decoding's on every prompt, and its decode seconds.</summary>
    public sealed record DraftCandidate(string Method, int Draft, int Prompts, int Identical, long Passes, long Drafted, long Accepted, double Seconds, int Tokens)
    {
        /// <summary>Draft tokens kept per verification pass (0..K).</summary>
        public double MeanAccepted => Passes == 0 ? 0 : (double)Accepted / Passes;
        public double AcceptanceRate => Drafted == 0 ? 0 : (double)Accepted / Drafted;
        public double TokensPerPass => Passes == 0 ? 0 : (double)(Accepted + Passes) / Passes;
        public double TokensPerSecond => Tokens / Math.Max(1e-9, Seconds);
        public bool Lossless => Identical == Prompts;
    }

    /// <summary>The draft sweep: every candidate, dense decoding's speed over the same prompts, and the choice.</summary>
    public sealed record DraftSweep(IReadOnlyList<DraftCandidate> Candidates, DraftCandidate Chosen, double DenseTokensPerSecond, int Prompts, int Context,
        string Budget, int Tokens)
    {
        public MethodDefaults.Draft Choice => new(Chosen.Method, Budget, Chosen.Draft.ToString(System.Globalization.CultureInfo.InvariantCulture));

        public JsonObject Provenance()
        {
            var candidates = new JsonObject();
            foreach (var x in Candidates)
                candidates[$"{x.Method},{x.Draft}"] = new JsonObject
                {
                    ["mean_accepted"] = Math.Round(x.MeanAccepted, 4), ["acceptance_rate"] = Math.Round(x.AcceptanceRate, 4),
                    ["tokens_per_second"] = Math.Round(x.TokensPerSecond, 1), ["identical_to_dense"] = $"{x.Identical}/{x.Prompts}",
                };
            return new JsonObject
            {
                ["chosen"] = $"{Chosen.Method},{Chosen.Draft}",
                ["metric"] = "greedy speculative decode tokens per second on the calibrating machine, among drafts whose output was dense decoding's on every prompt",
                ["budget"] = Budget, ["context"] = Context, ["prompts"] = Prompts, ["tokens"] = Tokens,
                ["tasks"] = string.Join(",", Tasks), ["seed_base"] = SeedBase,
                ["dense_tokens_per_second"] = Math.Round(DenseTokensPerSecond, 1), ["candidates"] = candidates,
            };
        }
    }

    /// <summary>Chooses the draft for self-speculative decoding: on each calibration prompt (prefilled once), dense
    /// decoding's `tokens` greedy tokens, then every (method, K) candidate's by <see cref="SpeculativeDecoder"/>
    /// from a copy of the prefill, compared with dense's token for token and timed, candidates interleaved so that
    /// other load on the machine weighs on all alike. Chosen: the fastest candidate whose output was dense's on
    /// every prompt — acceptance alone does not choose, as a longer draft keeps more per pass and costs more
    /// draft steps and rows of the verification pass. `parameters` gives each method's settings (the model's
    /// stored ones).</summary>
    public static DraftSweep SweepDrafts(IInferenceEngine engine, PromptBuilder builder, IReadOnlyList<string> methods, IReadOnlyList<int> drafts,
        int context, int prompts, string budget, int tokens, Func<string, IReadOnlyDictionary<string, string>> parameters, Action<string>? log = null)
    {
        if (tokens < 2 || tokens >= EvalGrid.Reserve)
            throw new ArgumentException($"The draft sweep generates 2 to {EvalGrid.Reserve - 1} tokens per prompt, not {tokens}.");
        var c = engine.Config;
        var candidates = methods.SelectMany(m => drafts.Select(k => (Method: m, Draft: k))).ToArray();
        var plans = candidates.Select(x => SelectorSpec.Parse(x.Method, budget, parameters(x.Method))).ToArray();
        var identical = new int[candidates.Length];
        var passes = new long[candidates.Length];
        var drafted = new long[candidates.Length];
        var accepted = new long[candidates.Length];
        var seconds = new double[candidates.Length];
        double denseSeconds = 0;
        var greedy = new Sampler(SamplingOptions.Greedy);
        // the first prompt's runs compile the code paths; a warm-up round on it is not counted
        for (int i = -1; i < prompts; i++)
        {
            int n = Math.Max(0, i);
            string task = Tasks[n % Tasks.Length];
            var sample = builder.Build(task, context - EvalGrid.Reserve, (n + 0.5) / prompts, RandomExtensions.StableSeed(SeedBase, task, context, n));
            using var prefilled = engine.CreateSequence(sample.Prompt.Length + tokens);
            prefilled.Prefill(sample.Prompt);
            var dense = new List<int>(tokens);
            long t0 = Stopwatch.GetTimestamp();
            using (var copy = prefilled.Fork(prefilled.Capacity))
                while (true)
                {
                    dense.Add(greedy.Next(copy.Logits));
                    if (dense.Count == tokens) break;
                    copy.Decode(dense[^1]);
                }
            if (i >= 0) denseSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
            for (int v = 0; v < candidates.Length; v++)
            {
                var plan = engine.PlanFor(plans[v])!;
                using var copy = prefilled.Fork(prefilled.Capacity, plan);
                var decoder = new SpeculativeDecoder(c.VocabSize, new SpeculationOptions(candidates[v].Draft));
                var generated = new List<int>(tokens);
                long t1 = Stopwatch.GetTimestamp();
                decoder.Run(copy, plan, greedy, tokens, [], generated);
                if (i < 0) continue;
                seconds[v] += Stopwatch.GetElapsedTime(t1).TotalSeconds;
                if (generated.SequenceEqual(dense)) identical[v]++;
                var stats = decoder.Stats;
                passes[v] += stats.Passes;
                drafted[v] += stats.Drafted;
                accepted[v] += stats.Accepted;
            }
            log?.Invoke(i < 0 ? "draft sweep: warmed up on the first prompt" : $"draft sweep: prompt {i + 1}/{prompts} ({task}, {sample.Prompt.Length} tokens) done");
        }
        var result = candidates.Select((x, v) => new DraftCandidate(x.Method, x.Draft, prompts, identical[v], passes[v], drafted[v], accepted[v], seconds[v], tokens * prompts))
            .ToArray();
        var lossless = result.Where(x => x.Lossless).ToArray();
        if (lossless.Length == 0)
            throw new InvalidOperationException("No draft gave dense decoding's output on every calibration prompt: speculative decoding is not lossless on this engine.");
        return new DraftSweep(result, lossless.MaxBy(x => x.TokensPerSecond)!, tokens * prompts / Math.Max(1e-9, denseSeconds), prompts, context, budget, tokens);
    }

    /// <summary>Sweeps one setting of `method`, every other parameter as `baseParameters` give it (the model's
    /// stored settings: a second sweep builds on the first).</summary>
    public static Result Sweep(IInferenceEngine engine, PromptBuilder builder, string method, int context, int prompts, string budget,
        Action<string>? log = null, string? parameterName = null, IReadOnlyDictionary<string, string>? baseParameters = null)
    {
        if (!engine.SupportsObserver)
            throw new NotSupportedException($"Calibration measures attention-mass recall and keys read, which need the CPU engine; {engine.DeviceName} has no attention observer.");
        var c = engine.Config;
        var (parameter, values) = Candidates(method, c, parameterName);
        var recall = new double[values.Length];
        var keys = new double[values.Length];
        var scored = new double[values.Length];
        var logp = new double[values.Length];
        int predictions = 0;
        for (int i = 0; i < prompts; i++)
        {
            string task = Tasks[i % Tasks.Length];
            var sample = builder.Build(task, context - EvalGrid.Reserve, (i + 0.5) / prompts, RandomExtensions.StableSeed(SeedBase, task, context, i));
            using var prefilled = engine.CreateSequence(context);
            prefilled.Prefill(sample.Prompt);
            for (int v = 0; v < values.Length; v++)
            {
                var ps = new Dictionary<string, string>(baseParameters ?? new Dictionary<string, string>(), StringComparer.OrdinalIgnoreCase);
                foreach (var (k, x) in SettingsOf(parameter, values[v])) ps[k] = x;
                using var copy = prefilled.Fork(context, SelectorSpec.Parse(method, budget, ps).CreatePlan(c, engine.MaxContext));
                var observer = new SparsityObserver();
                for (int a = 0; a < sample.Answer.Length; a++)
                {
                    // the first step is every method's cold start (LFPS refreshes, PrHS retrieves): not its steady cost
                    copy.Decode(sample.Answer[a], a == 0 ? null : observer);
                    if (a + 1 < sample.Answer.Length) logp[v] += Logits.LogSoftmaxAt(copy.Logits, sample.Answer[a + 1]);
                }
                if (v == 0) predictions += Math.Max(0, sample.Answer.Length - 1);
                var t = observer.Totals();
                recall[v] += t.MassRecall / prompts;
                keys[v] += t.KeysAttendedPerStep / prompts;
                scored[v] += t.KeysScoredPerHead / ((double)sample.Prompt.Length * c.NumLayers) / prompts;
            }
            log?.Invoke($"calibration prompt {i + 1}/{prompts} ({task}, {sample.Prompt.Length} tokens) done");
        }
        var candidates = values.Select((v, i) => new Candidate(v, logp[i] / Math.Max(1, predictions), recall[i], keys[i], scored[i])).ToArray();
        var affordable = MaxScoredShare(method) is double cap ? candidates.Where(x => x.ScoredShare <= cap).ToArray() : candidates;
        var best = (affordable.Length > 0 ? affordable : candidates).MaxBy(x => x.AnswerLogProb)!;
        return new Result(method, parameter, best.Value, candidates, prompts, context, budget);
    }
}
