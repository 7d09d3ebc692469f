using SparseDecode.Cli.TensorParallel;
using System.CommandLine;
using Microsoft.Extensions.Logging;
using SparseDecode.Engine;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`serve`: an OpenAI-compatible HTTP server (completions, chat completions, streaming) with continuous
/// batching and per-request sparse attention.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var host = new Option<string>("--host") { Description = "Address to listen on (an IP address or localhost).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port).", DefaultValueFactory = _ => 8080 };
        var name = new Option<string?>("--served-model-name") { Description = "Model id reported by /v1/models (default: the model directory's name)." };
        var kv = CommonOptions.CacheType();
        var maxBatch = new Option<int>("--max-batch") { Description = "Sequences decoded together at most (continuous batching).", DefaultValueFactory = _ => 16 };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests waiting at most; beyond it requests get 429.", DefaultValueFactory = _ => 64 };
        var maxTokens = new Option<int>("--max-tokens-limit") { Description = "Largest max_tokens a request may ask for.", DefaultValueFactory = _ => 4096 };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body; larger ones get 413.", DefaultValueFactory = _ => 1L << 20 };
        var prefillChunk = new Option<int?>("--prefill-chunk") { Description = "Prompt tokens one sequence prefills per scheduler step, so long prompts do not stall running streams. Default: 256 on the CPU, 2048 on the GPU." };
        var prefillBudget = new Option<int?>("--prefill-budget") { Description = "Prompt tokens all sequences together prefill per scheduler step at most, oldest first (0: no limit). Default: no limit on the CPU, 8192 on the GPU." };
        var prefillPacing = new Option<string>("--prefill-pacing") { Description = "on: while sequences decode, each step prefills for about as long as it decodes, so a long prompt does not stall the running streams (their gaps between tokens aim at twice a step's, and a prompt arriving among them waits about twice its prefill alone); off (default): every step takes --prefill-budget.", DefaultValueFactory = _ => "off" };
        var prefixCache = new Option<int>("--prefix-cache") { Description = "Finished requests' prompt caches (and a dense request's reply) kept for reuse (0: none): a request whose prompt begins with at least 64 of a kept one's tokens copies their keys and values, by whole prefill chunks, instead of prefilling them (usage.prompt_tokens_details.cached_tokens).", DefaultValueFactory = _ => 4 };
        var prefixCacheMemory = new Option<double?>("--prefix-cache-gb") { Description = "GB of cache the kept prompt caches may hold together. Default: 2 on the CPU; on the GPU none beyond the KV cache's own, from which kept caches give way to requests." };
        var kvMemory = new Option<double?>("--kv-cache-gb") { Description = "CPU: GB the KV caches of all requests may hold together (each holds what its prompt plus max_tokens can fill); a request that would pass it waits in line for room (0: no bound). Default: 80% of the memory left beside the weights." };
        var kvOnDemand = new Option<string>("--kv-on-demand") { Description = "GPU: map each request's KV cache pages from one pool as its prompt plus max_tokens need (on), or give every batch place a slot of the full --context (off). auto: on where a head's run of the context spans two or more 2 MiB pages, or where the slots allocated whole would not fit.", DefaultValueFactory = _ => "auto" };
        kvOnDemand.AcceptOnlyFromAmong("auto", "on", "off");
        var sequential = new Option<bool>("--sequential") { Description = "Decode the sequences of a step one after another instead of in parallel." };
        var quiet = new Option<bool>("--quiet") { Description = "Log warnings and errors only." };
        var apiKey = new Option<string?>("--api-key") { Description = $"Require 'Authorization: Bearer KEY' on /v1 routes (default: ${ApiKeyVariable} if set; /health and /metrics stay open)." };
        var drain = new Option<double>("--drain-timeout") { Description = "Seconds in-flight requests get to finish on SIGTERM or Ctrl+C before they are ended with 503.", DefaultValueFactory = _ => 10 };
        var streamTimeout = new Option<double>("--stream-timeout") { Description = "Seconds a streaming client may accept no data before its stream is closed and its batch place freed.", DefaultValueFactory = _ => 30 };
        var perClient = new Option<int?>("--max-per-client") { Description = "Sequences one client address may have decoding at once (0: no cap). Default: half of --max-batch." };
        var device = CommonOptions.Device();
        var gpuPrefill = CommonOptions.PrefillPrecision();
        var gpuDecode = CommonOptions.DecodePrecision();
        var context = new Option<int?>("--context") { Description = "Positions one sequence may hold (prompt + completion; default: the model's context). Requests beyond it are refused; on the GPU every batch place gets a cache slot of this size (on demand: only the pages its prompt and max_tokens cover), on the CPU each sequence's cache is sized for its prompt and max_tokens, at most this." };
        var method = MethodOptions.Create();
        var tensorParallel = RankLauncher.TensorParallelOption();
        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics).")
            { model, host, port, name, kv, device, gpuPrefill, gpuDecode, tensorParallel, context, maxBatch, maxQueue, maxTokens, maxBody, prefillChunk, prefillBudget, prefillPacing, prefixCache, prefixCacheMemory, kvMemory, kvOnDemand, sequential, quiet, apiKey, drain, streamTimeout, perClient,
              method.Method, method.Budget, method.Params };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            TensorParallelGate.Check(r.GetValue(tensorParallel), dir, CommonOptions.ParseDevice(r.GetValue(device)!), "serve");
            method.CheckMethodGiven(r);
            bool onGpu = CommonOptions.ParseDevice(r.GetValue(device)!) == "cuda";
            var options = new ServerOptions
            {
                Host = r.GetValue(host)!,
                Port = r.GetValue(port),
                ModelName = r.GetValue(name),
                Method = r.GetValue(method.Method)!,
                Budget = r.GetValue(method.Budget)!,
                Params = MethodOptions.ParseParams(r.GetValue(method.Params) ?? []),
                MaxTokensLimit = r.GetValue(maxTokens),
                MaxBodyBytes = r.GetValue(maxBody),
                LogLevel = r.GetValue(quiet) ? LogLevel.Warning : LogLevel.Information,
                ApiKey = r.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ApiKeyVariable),
                DrainTimeout = Seconds(r.GetValue(drain), "--drain-timeout"),
                StreamWriteTimeout = Seconds(r.GetValue(streamTimeout), "--stream-timeout"),
                Scheduler = new SchedulerOptions
                {
                    MaxBatch = r.GetValue(maxBatch),
                    MaxActivePerClient = r.GetValue(perClient) is int pc ? pc : Math.Max(1, (r.GetValue(maxBatch) + 1) / 2),
                    MaxQueue = r.GetValue(maxQueue),
                    PrefillChunk = r.GetValue(prefillChunk) ?? (onGpu ? 2048 : 256),
                    PrefillBudget = r.GetValue(prefillBudget) ?? (onGpu ? 8192 : 0),
                    PacePrefill = r.GetValue(prefillPacing)!.ToLowerInvariant() switch
                    {
                        "on" => true,
                        "off" => false,
                        var x => throw new ArgumentException($"--prefill-pacing takes on or off, not '{x}'."),
                    },
                    ParallelSequences = !r.GetValue(sequential),
                    PrefixCacheEntries = r.GetValue(prefixCache) is >= 0 and var entries ? entries : throw new ArgumentException($"--prefix-cache must be ≥ 0, got {r.GetValue(prefixCache)}."),
                    PrefixCacheBytes = r.GetValue(prefixCacheMemory) switch
                    {
                        null => onGpu ? long.MaxValue : 2L << 30,
                        double gb when gb >= 0 && gb < 1e6 => (long)(gb * 1e9),
                        var gbBad => throw new ArgumentException($"--prefix-cache-gb must be between 0 and 1000000, got {gbBad}."),
                    },
                },
                Engine = CommonOptions.Engine(r, device, kv, capacity: r.GetValue(context) is int c && c >= 1 ? c
                    : r.GetValue(context) is int bad ? throw new ArgumentException($"--context must be ≥ 1, got {bad}.") : null, prefill: gpuPrefill, decode: gpuDecode) with
                {
                    KvOnDemand = r.GetValue(kvOnDemand) switch { "on" => true, "off" => false, _ => null },
                    KvCacheBytes = onGpu ? NoGpuBound(r.GetValue(kvMemory)) : CpuKvBound(r.GetValue(kvMemory), dir),
                },
            };
            int modelContext = SparseDecode.Model.ModelConfig.Load(dir).MaxPositions;
            if (options.Engine.Capacity > modelContext)
                throw new ArgumentException($"--context {options.Engine.Capacity} exceeds the model's context of {modelContext} tokens.");
            if (options.Port is < 0 or > 65535) throw new ArgumentException($"--port must be in 0..65535, got {options.Port}.");
            if (options.MaxTokensLimit < 1) throw new ArgumentException($"--max-tokens-limit must be ≥ 1, got {options.MaxTokensLimit}.");
            if (r.GetValue(perClient) is < 0) throw new ArgumentException($"--max-per-client must be ≥ 0 (0: no cap), got {r.GetValue(perClient)}.");
            if (options.StreamWriteTimeout == TimeSpan.Zero) throw new ArgumentException("--stream-timeout must be above 0 seconds: 0 would close every stream at once.");
            if (options.MaxBodyBytes < 1024) throw new ArgumentException($"--max-body-bytes must be ≥ 1024, got {options.MaxBodyBytes}.");
            return Serve(dir, options).GetAwaiter().GetResult();
        }));
        return cmd;
    }

    /// <summary>The CPU's bound on its KV caches: --kv-cache-gb (0: none), or 80% of the memory the process may use
    /// beyond the checkpoint's weights (which are mapped from their files and read whole).</summary>
    private static long? CpuKvBound(double? gb, string dir)
    {
        if (gb is double g)
            return g == 0 ? null : g > 0 && g < 1e6 ? (long)(g * 1e9) : throw new ArgumentException($"--kv-cache-gb must be between 0 and 1000000, got {g}.");
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long weights = Directory.EnumerateFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length);
        long bound = (long)(0.8 * (memory - weights));
        return bound >= 64L << 20 ? bound : throw new ArgumentException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"This machine's {memory / 1e9:F1} GB leave no room for a KV cache beside the model's {weights / 1e9:F1} GB of weights; give --kv-cache-gb."));
    }

    private static long? NoGpuBound(double? gb) => gb is null ? null
        : throw new ArgumentException("--kv-cache-gb bounds the CPU's KV caches; the GPU sizes its pool from its free memory.");

    /// <summary>The environment variable that holds the API key when --api-key is not given (keeps it out of `ps`).</summary>
    public const string ApiKeyVariable = "SPARSEDECODE_API_KEY";

    private static TimeSpan Seconds(double s, string option) => double.IsFinite(s) && s >= 0 && s <= 3600
        ? TimeSpan.FromSeconds(s) : throw new ArgumentException($"{option} must be between 0 and 3600 seconds, got {s}.");

    private static async Task<int> Serve(string dir, ServerOptions options)
    {
        await using var server = await SparseServer.StartAsync(dir, options);
        var m = server.Model;
        string method = options.Method.Equals("dense", StringComparison.OrdinalIgnoreCase) ? options.Method : $"{options.Method}, budget {options.Budget}";
        Console.Error.WriteLine($"serving {m.Id} on {m.Engine.DeviceName} ({m.Engine.Config.NumLayers} layers, context {m.Context}, chat format {m.Template.Format}, method {method}) at {server.BaseAddress}");
        if (m.Engine.KvPool is { Total: > 0 } pool)
            Console.Error.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"KV cache: {pool.Total / 1e9:F1} GB for all requests together; each holds what its prompt plus max_tokens can fill, and waits in line while too little is free"));
        Console.Error.WriteLine("endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics; Ctrl+C stops"
            + (string.IsNullOrEmpty(options.ApiKey) ? "" : "; /v1 routes require the API key"));
        await server.WaitForShutdownAsync();
        return 0;
    }
}
