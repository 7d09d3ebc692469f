using SparseDecode.Backends;
using SparseDecode.Cli.TensorParallel;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Model;
using Spectre.Console;
using SparseDecode.Cpu;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`bench`: prefill and decode speed on the CPU at a given context, with the memory bandwidth a decode
/// step achieves (weights + KV bytes it reads ÷ its time) beside the machine's measured copy bandwidth. With
/// --batch N, the decode of N sequences at once through <see cref="IInferenceEngine.DecodeBatch"/> on either device,
/// the path the server takes: total tokens/s over all sequences, beside dense's in the same run.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var context = new Option<int>("--context") { Description = "Tokens prefilled before decoding.", DefaultValueFactory = _ => 1024 };
        var steps = new Option<int>("--steps") { Description = "Decode steps timed.", DefaultValueFactory = _ => 32 };
        var kv = CommonOptions.CacheType();
        var method = MethodOptions.Create();
        var device = CommonOptions.Device();
        var gpuPrefill = CommonOptions.PrefillPrecision();
        var gpuDecode = CommonOptions.DecodePrecision();
        var json = new Option<bool>("--json") { Description = "Print the measurements as one JSON object instead of the table." };
        var batch = new Option<int?>("--batch") { Description = "Decode this many sequences at once through the engine's batched step and report their total tokens/s, beside dense's." };
        var tensorParallel = RankLauncher.TensorParallelOption();
        var cmd = new Command("bench", "Measure prefill and decode tokens/s (and on the CPU the memory bandwidth a step achieves).") { model, context, steps, kv, device, gpuPrefill, gpuDecode, tensorParallel, json, batch };
        method.AddTo(cmd, report: false, speculate: true);
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            TensorParallelGate.Check(r.GetValue(tensorParallel), dir, CommonOptions.ParseDevice(r.GetValue(device)!), "bench");
            CommonOptions.CheckGpuPrecision(r, device, gpuPrefill);
            CommonOptions.CheckGpuPrecision(r, device, gpuDecode);
            if (method.Speculation(r, dir) is { } speculation)
            {
                if (r.GetValue(batch) is int)
                    throw new ArgumentException("--speculate times one sequence; it does not take --batch.");
                return BenchSpeculative(dir, r.GetValue(context), r.GetValue(steps), CommonOptions.Engine(r, device, kv, prefill: gpuPrefill, decode: gpuDecode),
                    method.Spec(r, dir), speculation, r.GetValue(json));
            }
            if (r.GetValue(batch) is int sequences)
                return BenchBatch(dir, r.GetValue(context), r.GetValue(steps), sequences, CommonOptions.Engine(r, device, kv, prefill: gpuPrefill, decode: gpuDecode),
                    method.Spec(r, dir), r.GetValue(json));
            if (CommonOptions.ParseDevice(r.GetValue(device)!) == "cuda")
                return BenchGpu(dir, r.GetValue(context), r.GetValue(steps), method.Spec(r, dir), CommonOptions.Engine(r, device, kv, prefill: gpuPrefill, decode: gpuDecode));
            using var t = Transformer.Load(dir);
            int n = r.GetValue(context), s = r.GetValue(steps);
            var rng = new Random(1);
            var prompt = RandomPrompt(t.Config, n, s, 1, rng);
            var type = CommonOptions.ParseCacheType(r.GetValue(kv)!);
            var spec = method.Spec(r, dir);

            // the prefill of a long context takes a minute on 2 cores: say what is happening meanwhile
            var progress = new ProgressLine("prefill", PhaseNote.Prefill(n));
            using var cache = t.CreateCache(n + s + 1, type);
            // dense runs without a plan, as the engine runs it
            SpanPlanOps? Plan() => spec.IsDense ? null : new SpanPlanOps(spec.CreatePlan(t.Config, cache.Capacity));
            var plan = Plan();
            var ws = new DecodeWorkspace(t, cache, spec.EffectiveGranularity);
            // an untimed prefill first, so that the timed one runs compiled code, as the decode steps below do
            using (var warmPrefill = t.CreateCache(Math.Min(n, t.PrefillChunk), type))
                t.Prefill(prompt.AsSpan(0, Math.Min(n, t.PrefillChunk)), warmPrefill, ws.Logits);
            long t0 = Stopwatch.GetTimestamp();
            ChunkedPrefill.Run(t, prompt, cache, ws.Logits, progress.Report);
            double prefillSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            // .NET compiles hot methods again, optimised, only after they have run for a while (tiered
            // compilation): decode on copies of the prefilled cache for a second before timing, then start the
            // timed run with fresh plan state so that its history begins at the timed positions
            var warm = Stopwatch.StartNew();
            for (int round = 0; round < 4 || warm.Elapsed.TotalSeconds < 1; round++)
            {
                using var warmCache = cache.Clone();
                var copyPlan = Plan();
                var copyWs = new DecodeWorkspace(t, warmCache, spec.EffectiveGranularity);
                for (int i = 0; i < Math.Min(s, 8); i++) t.Decode(rng.Next(t.Config.VocabSize), warmCache, copyWs, copyPlan);
            }
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bench: prefilled in {prefillSeconds:F1} s; warmed up; timing {s} decode steps"));
            t.Decode(1, cache, ws, plan);
            long allocated0 = GC.GetTotalAllocatedBytes(precise: true);
            long t1 = Stopwatch.GetTimestamp();
            for (int i = 0; i < s; i++) t.Decode(rng.Next(t.Config.VocabSize), cache, ws, plan);
            double decodeSeconds = Stopwatch.GetElapsedTime(t1).TotalSeconds / s;
            // all threads' managed allocations: what the parallel loops' bookkeeping costs per step
            double allocatedPerStep = (GC.GetTotalAllocatedBytes(precise: true) - allocated0) / (double)s;

            double kvBytes = (double)cache.BytesPerPosition * (n + 1 + s / 2.0);
            double stepBytes = t.WeightBytesPerToken + kvBytes;
            double copy = CopyBandwidth();
            var ci = CultureInfo.InvariantCulture;
            if (r.GetValue(json))
            {
                JsonOut.Write(w =>
                {
                    w.WriteString("model", t.Config.ArchitectureName);
                    w.WriteNumber("parameters", t.ParameterCount);
                    w.WriteString("weights", t.WeightType.Name());
                    w.WriteString("kv_cache", type.Name());
                    w.WriteString("method", spec.Method);
                    w.WriteString("budget", spec.Budget.ToString());
                    w.WriteNumber("threads", WorkerPool.Shared.Threads);
                    w.WriteNumber("context", n);
                    w.WriteNumber("steps", s);
                    w.Number("prefill_tokens_per_second", n / prefillSeconds);
                    w.Number("prefill_seconds", prefillSeconds);
                    w.Number("decode_tokens_per_second", 1 / decodeSeconds);
                    w.Number("decode_ms_per_step", decodeSeconds * 1e3);
                    w.Number("allocated_bytes_per_step", allocatedPerStep);
                    w.Number("dense_bytes_per_step", stepBytes);
                    w.Number("achieved_bandwidth_bytes_per_second", stepBytes / decodeSeconds);
                    w.Number("copy_bandwidth_bytes_per_second", copy);
                });
                return 0;
            }
            var table = CpuTable(t, spec, type);
            table.AddRow("prefill", string.Create(ci, $"{n / prefillSeconds:F1} tokens/s ({n} tokens, {prefillSeconds:F2} s)"));
            table.AddRow("decode", string.Create(ci, $"{1 / decodeSeconds:F1} tokens/s ({decodeSeconds * 1e3:F2} ms/step at {n} context)"));
            table.AddRow("managed allocation per step", string.Create(ci, $"{allocatedPerStep / 1e3:F1} KB"));
            table.AddRow("bytes read per dense step", string.Create(ci, $"{stepBytes / 1e6:F1} MB (weights {t.WeightBytesPerToken / 1e6:F1} + KV {kvBytes / 1e6:F1})"));
            table.AddRow("achieved bandwidth (dense bytes)", string.Create(ci, $"{stepBytes / decodeSeconds / 1e9:F2} GB/s"));
            table.AddRow("machine copy bandwidth", string.Create(ci, $"{copy / 1e9:F2} GB/s (read + write, all cores)"));
            AnsiConsole.Write(table);
            return 0;
        }));
        return cmd;
    }

    /// <summary>Most sequences `bench --batch` decodes together: each holds a whole KV cache of the context.</summary>
    private const int MaxBatch = 256;

    /// <summary>`bench --batch N` on either engine: N sequences, each a fork of one prefilled context (the forks'
    /// plans start fresh there), decode together through <see cref="IInferenceEngine.DecodeBatch"/>, the path the
    /// server takes; then the same with dense forks, the baseline of the same run. Forks decode a while first so
    /// that the timed steps run optimised code and captured graphs; the timed forks then decode one untimed step
    /// and `steps` timed ones. tokens/s counts every sequence's token.</summary>
    private static int BenchBatch(string dir, int n, int s, int sequences, EngineOptions options, Selection.SelectorSpec spec, bool json)
    {
        if (sequences is < 1 or > MaxBatch) throw new ArgumentException($"--batch must be between 1 and {MaxBatch}, got {sequences}.");
        int capacity = n + s + 1;
        using var engine = BackendRegistry.Load(dir, options with { Capacity = capacity, Sequences = sequences + 1 });
        var config = engine.Config;
        var rng = new Random(1);
        var prompt = RandomPrompt(config, n, s, 1, rng);
        using var prefilled = engine.CreateSequence(capacity);
        prefilled.Prefill(prompt);
        var tokens = new int[sequences];
        var forks = new List<IDecodeSequence>(sequences);
        void Fork(Selection.SelectionPlan? plan)
        {
            foreach (var f in forks) f.Dispose();
            forks.Clear();
            for (int i = 0; i < sequences; i++) forks.Add(prefilled.Fork(capacity, plan));
        }
        void Step()
        {
            for (int i = 0; i < sequences; i++) tokens[i] = rng.Next(config.VocabSize);
            engine.DecodeBatch(forks, tokens);
        }
        var runs = new List<(string Method, double[] Steps, double AllocatedPerStep)>();
        try
        {
            foreach (var run in spec.IsDense ? [null] : new[] { spec, null })
            {
                var plan = engine.PlanFor(run);
                var warm = Stopwatch.StartNew();
                for (int round = 0; round < 4 || warm.Elapsed.TotalSeconds < 1; round++)
                {
                    Fork(plan);
                    for (int i = 0; i < Math.Min(s, 8); i++) Step();
                }
                Fork(plan);
                Step();
                var times = new double[s];
                long allocated0 = GC.GetTotalAllocatedBytes(precise: true);
                for (int i = 0; i < s; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    Step();
                    times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                }
                runs.Add((run is null || run.IsDense ? "dense" : run.Method, times, (GC.GetTotalAllocatedBytes(precise: true) - allocated0) / (double)s));
            }
        }
        finally
        {
            foreach (var f in forks) f.Dispose();
        }
        var ci = CultureInfo.InvariantCulture;
        static (double Mean, double Sd) Stats(double[] x)
        {
            double mean = x.Average();
            return (mean, Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / Math.Max(1, x.Length - 1)));
        }
        if (json)
        {
            JsonOut.Write(w =>
            {
                w.WriteString("model", config.ArchitectureName);
                w.WriteString("device", engine.DeviceName);
                w.WriteString("method", spec.Method);
                w.WriteString("budget", spec.Budget.ToString());
                w.WriteNumber("threads", WorkerPool.Shared.Threads);
                w.WriteNumber("batch", sequences);
                if (options.Device == "cuda") w.WriteString("decode_products", options.DecodePrecision.ToString().ToLowerInvariant());
                w.WriteNumber("context", n);
                w.WriteNumber("steps", s);
                w.WriteStartArray("runs");
                foreach (var (m, times, alloc) in runs)
                {
                    var (mean, sd) = Stats(times);
                    w.WriteStartObject();
                    w.WriteString("method", m);
                    w.Number("decode_tokens_per_second", sequences / mean);
                    w.Number("decode_ms_per_step", mean * 1e3);
                    w.Number("decode_ms_per_step_sd", sd * 1e3);
                    w.Number("allocated_bytes_per_step", alloc);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
            return 0;
        }
        var table = new Table().AddColumn("measure").AddColumn("value");
        table.AddRow("model", $"{config.ArchitectureName} on {Markup.Escape(engine.DeviceName)}");
        table.AddRow("method", Markup.Escape(spec.ToString()));
        table.AddRow("batch", string.Create(ci, $"{sequences} sequences at {n} context"));
        if (options.Device == "cuda") table.AddRow("decode products", options.DecodePrecision.ToString().ToLowerInvariant());
        foreach (var (m, times, alloc) in runs)
        {
            var (mean, sd) = Stats(times);
            table.AddRow($"decode, {m}", string.Create(ci, $"{sequences / mean:F1} tokens/s in all ({mean * 1e3:F2} ± {sd * 1e3:F2} ms/step, {s} steps)"));
            table.AddRow($"managed allocation per step, {m}", string.Create(ci, $"{alloc / 1e3:F1} KB"));
        }
        if (runs.Count == 2)
            table.AddRow("method vs dense", string.Create(ci, $"{Stats(runs[1].Steps).Mean / Stats(runs[0].Steps).Mean:F2}× dense's tokens/s"));
        AnsiConsole.Write(table);
        return 0;
    }

    /// <summary>Timed runs of each kind in `bench --speculate`: the spread of the tokens/s.</summary>
    private const int SpeculativeRuns = 3;

    /// <summary>`bench --speculate K` on either engine: from one prefilled context, `steps` tokens generated
    /// greedily three ways — dense, the method alone, and speculative (the method drafts, dense verifies) — each on
    /// a fork of the context, all runs interleaved after a second of warm-up, three timed runs of each. Reports each
    /// way's tokens/s (median and range), the acceptance and whether the speculative tokens are the dense ones.</summary>
    private static int BenchSpeculative(string dir, int n, int s, EngineOptions options, Selection.SelectorSpec spec, SpeculationOptions speculation, bool json)
    {
        int capacity = n + s + 1;
        // the prefilled context and one fork at a time
        using var e = BackendRegistry.Load(dir, options with { Capacity = capacity, Sequences = 2 });
        var config = e.Config;
        var prompt = RandomPrompt(config, n, s, 1, new Random(1));
        var plan = e.PlanFor(spec);
        using var prefilled = e.CreateSequence(capacity);
        // a long context takes a while to prefill on the CPU: say what is happening meanwhile
        prefilled.Prefill(prompt, progress: e.DeviceName == "cpu" ? new ProgressLine("prefill", PhaseNote.Prefill(n)).Report : null);
        var greedy = new Sampler(SamplingOptions.Greedy);
        SpeculationStats? stats = null;
        // one run: the tokens and the decode seconds; kind 0 dense, 1 the method, 2 speculative
        (List<int> Tokens, double Seconds) Run(int kind, int tokens)
        {
            using var fork = prefilled.Fork(capacity, kind == 0 ? null : plan);
            var output = new List<int>(tokens);
            long t0 = Stopwatch.GetTimestamp();
            if (kind == 2)
            {
                var decoder = new SpeculativeDecoder(config.VocabSize, speculation);
                decoder.Run(fork, plan!, greedy, tokens, [], output);
                stats = decoder.Stats;
            }
            else
                while (true)
                {
                    output.Add(greedy.Next(fork.Logits));
                    if (output.Count == tokens) break;
                    fork.Decode(output[^1]);
                }
            return (output, Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        var warm = Stopwatch.StartNew();
        while (warm.Elapsed.TotalSeconds < 1)
            for (int kind = 0; kind < 3; kind++) Run(kind, Math.Min(s, 8));
        Console.Error.WriteLine($"bench: prefilled {n} tokens; warmed up; generating {s} tokens {SpeculativeRuns} times dense, with {spec.Method} and speculatively");
        var speeds = new double[3][];
        var outputs = new List<int>[3];
        long passes = 0, drafted = 0, accepted = 0;
        for (int kind = 0; kind < 3; kind++) speeds[kind] = new double[SpeculativeRuns];
        for (int run = 0; run < SpeculativeRuns; run++)
            for (int kind = 0; kind < 3; kind++)
            {
                var (tokens, seconds) = Run(kind, s);
                speeds[kind][run] = tokens.Count / seconds;
                outputs[kind] = tokens;
                if (kind == 2) (passes, drafted, accepted) = (passes + stats!.Passes, drafted + stats.Drafted, accepted + stats.Accepted);
            }
        var total = new SpeculationStats((int)passes, drafted, accepted, stats!.Exact);
        bool lossless = outputs[2].SequenceEqual(outputs[0]);
        int sparseAgrees = outputs[1].Zip(outputs[0]).TakeWhile(p => p.First == p.Second).Count();
        foreach (var row in speeds) Array.Sort(row);
        string[] names = ["dense", spec.Method, $"speculative (K={speculation})"];
        var ci = CultureInfo.InvariantCulture;
        if (json)
        {
            JsonOut.Write(w =>
            {
                w.WriteString("model", config.ArchitectureName);
                w.WriteString("device", e.DeviceName);
                w.WriteString("method", spec.Method);
                w.WriteString("budget", spec.Budget.ToString());
                w.WriteString("speculate", speculation.ToString());
                w.WriteNumber("threads", WorkerPool.Shared.Threads);
                w.WriteNumber("context", n);
                w.WriteNumber("steps", s);
                w.WriteNumber("runs", SpeculativeRuns);
                foreach (var (key, row) in new[] { ("dense", speeds[0]), ("sparse", speeds[1]), ("speculative", speeds[2]) })
                {
                    w.Number(key + "_tokens_per_second", row[SpeculativeRuns / 2]);
                    w.Number(key + "_tokens_per_second_min", row[0]);
                    w.Number(key + "_tokens_per_second_max", row[^1]);
                }
                w.Number("acceptance_rate", total.AcceptanceRate);
                w.Number("mean_accepted", total.MeanAccepted);
                w.Number("tokens_per_pass", total.TokensPerPass);
                w.WriteBoolean("lossless", lossless);
                w.WriteBoolean("exact_verification", total.Exact);
                w.WriteNumber("sparse_tokens_agreeing", sparseAgrees);
            });
            return lossless ? 0 : 1;
        }
        var table = MeasureTable();
        table.AddRow("model", Markup.Escape($"{config.ArchitectureName} on {e.DeviceName}"));
        table.AddRow("method", Markup.Escape($"{spec.Method} (budget {spec.Budget})"));
        if (e.DeviceName == "cpu") table.AddRow("threads", WorkerPool.Shared.Threads.ToString(ci));
        table.AddRow("context", n.ToString(ci));
        for (int kind = 0; kind < 3; kind++)
            table.AddRow(Markup.Escape(names[kind]), string.Create(ci,
                $"{speeds[kind][SpeculativeRuns / 2]:F1} tokens/s ({speeds[kind][0]:F1}-{speeds[kind][^1]:F1} over {SpeculativeRuns} runs of {s} tokens)"));
        table.AddRow("draft tokens kept", string.Create(ci, $"{total.AcceptanceRate:P1} ({total.Accepted} of {total.Drafted})"));
        table.AddRow("kept per pass", string.Create(ci, $"{total.MeanAccepted:F2} drafts + 1 = {total.TokensPerPass:F2} tokens per dense pass"));
        table.AddRow("speculative = dense", (lossless ? "yes, token for token" : "[red]NO[/]")
            + (total.Exact ? "" : " (verified through the engine's prefill)"));
        table.AddRow(Markup.Escape($"{spec.Method} alone = dense"), string.Create(ci, $"first {sparseAgrees} of {s} tokens"));
        AnsiConsole.Write(table);
        return lossless ? 0 : 1;
    }

    /// <summary>`bench --device cuda`: the whole step on the GPU (bf16 weights and cache). A first session warms
    /// the host code and the kernels; the timed one prefills, decodes one step (which captures the dense step's
    /// graph), then times `steps` decode steps, each ending with its logits on the host.</summary>
    private static int BenchGpu(string dir, int n, int s, Selection.SelectorSpec spec, EngineOptions options)
    {
        var config = ModelConfig.Load(dir);
        var rng = new Random(1);
        var prompt = RandomPrompt(config, n, s, 2, rng);
        using var gpu = BackendRegistry.Load(dir, options with { Capacity = n + s + 2 });
        double prefillSeconds = 0, decodeSeconds = 0;
        for (int round = 0; round < 2; round++)
        {
            // every method runs as a row of the engine's captured step graph
            using var session = gpu.CreateSequence(n + s + 2, gpu.PlanFor(spec));
            var p = round == 0 ? prompt.AsSpan(0, Math.Min(n, 64)) : prompt;
            long t0 = Stopwatch.GetTimestamp();
            session.Prefill(p);
            prefillSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            session.Decode(1);
            long t1 = Stopwatch.GetTimestamp();
            for (int i = 0; i < s; i++) session.Decode(rng.Next(config.VocabSize));
            decodeSeconds = Stopwatch.GetElapsedTime(t1).TotalSeconds / s;
        }
        var ci = CultureInfo.InvariantCulture;
        var table = MeasureTable();
        table.AddRow("model", Markup.Escape($"{config.ArchitectureName}, {config.NumLayers} layers"));
        table.AddRow("device", Markup.Escape(gpu.DeviceName));
        table.AddRow("method", Markup.Escape($"{spec.Method} (budget {spec.Budget})"));
        table.AddRow("products (prefill, decode)", $"{options.PrefillPrecision}, {options.DecodePrecision}".ToLowerInvariant());
        table.AddRow("prefill", string.Create(ci, $"{n / prefillSeconds:F1} tokens/s ({n} tokens, {prefillSeconds:F3} s)"));
        table.AddRow("decode", string.Create(ci, $"{1 / decodeSeconds:F1} tokens/s ({decodeSeconds * 1e3:F3} ms/step at {n} context)"));
        AnsiConsole.Write(table);
        return 0;
    }

    /// <summary>`n` random token ids to prefill, once `n` prompt tokens, `s` timed steps and `untimed` other steps
    /// are known to fit the model's context.</summary>
    private static int[] RandomPrompt(ModelConfig config, int n, int s, int untimed, Random rng)
    {
        if (n < 1 || s < 1) throw new ArgumentException("--context and --steps must be positive.");
        if (n + s + untimed > config.MaxPositions)
            throw new ArgumentException($"--context {n} plus --steps {s} exceeds the model's context of {config.MaxPositions} tokens.");
        var prompt = new int[n];
        for (int i = 0; i < n; i++) prompt[i] = rng.Next(config.VocabSize);
        return prompt;
    }

    /// <summary>The measure table, opened with what a CPU run measured: the model, the method and the threads.</summary>
    private static Table CpuTable(Transformer t, Selection.SelectorSpec spec, DType cacheType)
    {
        var table = MeasureTable();
        table.AddRow("model", Markup.Escape($"{t.Config.ArchitectureName}, {t.ParameterCount / 1e6:F1}M params, {t.WeightType.Name()}"));
        table.AddRow("KV cache", cacheType.Name());
        table.AddRow("method", Markup.Escape($"{spec.Method} (budget {spec.Budget})"));
        table.AddRow("threads", WorkerPool.Shared.Threads.ToString(CultureInfo.InvariantCulture));
        return table;
    }

    private static Table MeasureTable() =>
        new Table().Border(TableBorder.Rounded).AddColumn("measure").AddColumn(new TableColumn("value").RightAligned());

    /// <summary>Copy of a 256 MiB buffer on all cores, counting bytes read plus written: the machine's ceiling.</summary>
    internal static unsafe double CopyBandwidth()
    {
        const long size = 256L << 20;
        byte* a = (byte*)NativeMemory.AlignedAlloc((nuint)size, 64), b = (byte*)NativeMemory.AlignedAlloc((nuint)size, 64);
        try
        {
            new Span<byte>(a, (int)size).Fill(1);
            new Span<byte>(b, (int)size).Fill(2);
            int parts = WorkerPool.Shared.Threads;
            long chunk = size / parts;
            double best = 0;
            for (int rep = 0; rep < 5; rep++)
            {
                long t0 = Stopwatch.GetTimestamp();
                Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, p => Buffer.MemoryCopy(a + p * chunk, b + p * chunk, chunk, chunk));
                best = Math.Max(best, 2.0 * size / Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(a);
            NativeMemory.AlignedFree(b);
        }
    }
}
