using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace SparseDecode.Server.Scheduling;

/// <summary>Counters and gauges of the server, rendered in the Prometheus text exposition format (version 0.0.4)
/// at GET /metrics. Counters only grow; gauges are read from the scheduler when scraped.</summary>
public sealed class ServerMetrics
{
    private const double RateWindowSeconds = 10;
    /// <summary>The status label of a request whose client went away before its response was complete.</summary>
    public const int ClientClosed = 499;

    private readonly ConcurrentDictionary<(string Endpoint, int Status), long> _requests = new();
    private readonly Queue<(long Stamp, int Tokens)> _recentSteps = new();
    private readonly long _started = Stopwatch.GetTimestamp();
    private long _promptTokens, _completionTokens, _cancelled, _steps, _stepTicks, _decodedTokens;
    private long _cachedPromptTokens;
    private long _speculativePasses, _draftTokens, _acceptedTokens;

    /// <summary>One method's latency histograms (bounds as vLLM's, finer below a second between tokens, where a step's
    /// time lies).</summary>
    private sealed class Latencies
    {
        public readonly LatencyHistogram FirstToken = new(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5,
            7.5, 10, 20, 40, 80, 160, 640, 2560);
        public readonly LatencyHistogram TokenGap = new(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
            0.035, 0.04, 0.05, 0.06, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 2.5, 5, 7.5, 10, 20, 40, 80);
        public readonly LatencyHistogram RequestTime = new(0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480,
            960, 1920, 7680);
    }

    // by the requests' method label (a handful: the methods served, with speculation marked)
    private readonly ConcurrentDictionary<string, Latencies> _latencies = new(StringComparer.Ordinal);
    private Latencies For(string method) => _latencies.GetOrAdd(method, static _ => new Latencies());

    /// <summary>A request's first token, `ticks` after it was submitted (queue and prefill included); `method`
    /// labels its histograms (<see cref="Sequence.MethodLabel"/>).</summary>
    public void FirstToken(string method, long ticks) => For(method).FirstToken.Observe(ticks);

    /// <summary>A step that gave a sequence tokens, `ticks` after the step that gave it its previous ones.</summary>
    public void TokenGap(string method, long ticks) => For(method).TokenGap.Observe(ticks);

    /// <summary>A request that ended, `ticks` after it was submitted.</summary>
    public void RequestTime(string method, long ticks) => For(method).RequestTime.Observe(ticks);

    public void RequestFinished(string endpoint, int status) => _requests.AddOrUpdate((endpoint, status), 1, (_, n) => n + 1);
    public void PromptTokens(int n) => Interlocked.Add(ref _promptTokens, n);
    public void CachedPromptTokens(int n) => Interlocked.Add(ref _cachedPromptTokens, n);
    public void CompletionTokens(int n) => Interlocked.Add(ref _completionTokens, n);
    public void Cancelled() => Interlocked.Increment(ref _cancelled);
    public long CancelledCount => Interlocked.Read(ref _cancelled);

    /// <summary>A speculating request's verification passes, the draft tokens its method proposed and how many of
    /// them the passes kept (added when it leaves the batch, as its completion tokens are).</summary>
    public void Speculation(int passes, long drafted, long accepted)
    {
        Interlocked.Add(ref _speculativePasses, passes);
        Interlocked.Add(ref _draftTokens, drafted);
        Interlocked.Add(ref _acceptedTokens, accepted);
    }

    public long RequestCount(string endpoint, int status) => _requests.TryGetValue((endpoint, status), out long n) ? n : 0;

    /// <summary>One scheduler step that produced `tokens` tokens (one per active sequence past its prefill).</summary>
    public void Step(int tokens, long elapsedTicks)
    {
        Interlocked.Increment(ref _steps);
        Interlocked.Add(ref _stepTicks, elapsedTicks);
        Interlocked.Add(ref _decodedTokens, tokens);
        long now = Stopwatch.GetTimestamp();
        lock (_recentSteps)
        {
            _recentSteps.Enqueue((now, tokens));
            Prune(now);
        }
    }

    private void Prune(long now)
    {
        long horizon = now - (long)(RateWindowSeconds * Stopwatch.Frequency);
        while (_recentSteps.Count > 0 && _recentSteps.Peek().Stamp < horizon) _recentSteps.Dequeue();
    }

    /// <summary>Tokens generated per second of wall time over the last 10 s (or since start, if sooner).</summary>
    public double DecodeTokensPerSecond
    {
        get
        {
            long now = Stopwatch.GetTimestamp();
            long sum = 0;
            lock (_recentSteps)
            {
                Prune(now);
                foreach (var (_, t) in _recentSteps) sum += t;
            }
            double window = Math.Min(RateWindowSeconds, Stopwatch.GetElapsedTime(_started, now).TotalSeconds);
            return window <= 0 ? 0 : sum / window;
        }
    }

    public string Render(string model, int queueDepth, int queueCapacity, int active, int maxBatch, long kvBytes, (long Total, long Free) kvPool = default,
        int prefillBudget = int.MaxValue)
    {
        var sb = new StringBuilder();
        var ci = CultureInfo.InvariantCulture;
        string m = Escape(model);
        void Metric(string name, string type, string help, string labels, double value)
        {
            sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            sb.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            sb.Append(name).Append('{').Append(labels).Append("} ").Append(double.IsPositiveInfinity(value) ? "+Inf" : value.ToString("R", ci)).Append('\n');
        }

        sb.Append("# HELP sparsedecode_requests_total Requests answered, by endpoint and HTTP status (499: the client went away first).\n");
        sb.Append("# TYPE sparsedecode_requests_total counter\n");
        foreach (var ((endpoint, status), n) in _requests.OrderBy(kv => kv.Key.Endpoint, StringComparer.Ordinal).ThenBy(kv => kv.Key.Status))
            sb.Append(ci, $"sparsedecode_requests_total{{model=\"{m}\",endpoint=\"{Escape(endpoint)}\",status=\"{status}\"}} {n}\n");
        Metric("sparsedecode_requests_cancelled_total", "counter", "Requests whose client went away before generation ended, while queued or decoding.",
            $"model=\"{m}\"", CancelledCount);
        Metric("sparsedecode_prompt_tokens_total", "counter", "Prompt tokens prefilled.", $"model=\"{m}\"", Interlocked.Read(ref _promptTokens));
        Metric("sparsedecode_prompt_tokens_cached_total", "counter", "Prompt tokens copied from a kept prompt's cache instead of prefilled.", $"model=\"{m}\"",
            Interlocked.Read(ref _cachedPromptTokens));
        Metric("sparsedecode_generation_tokens_total", "counter", "Tokens generated (completion tokens).", $"model=\"{m}\"",
            Interlocked.Read(ref _completionTokens));
        Metric("sparsedecode_speculative_passes_total", "counter", "Dense verification passes of speculating requests.", $"model=\"{m}\"",
            Interlocked.Read(ref _speculativePasses));
        Metric("sparsedecode_speculative_draft_tokens_total", "counter", "Draft tokens the sparse methods of speculating requests proposed.",
            $"model=\"{m}\"", Interlocked.Read(ref _draftTokens));
        Metric("sparsedecode_speculative_accepted_tokens_total", "counter", "Draft tokens the dense verification passes kept.",
            $"model=\"{m}\"", Interlocked.Read(ref _acceptedTokens));
        Metric("sparsedecode_scheduler_steps_total", "counter", "Scheduler steps (each decodes one token of every active sequence).",
            $"model=\"{m}\"", Interlocked.Read(ref _steps));
        Metric("sparsedecode_scheduler_step_seconds_total", "counter", "Time spent in scheduler steps.", $"model=\"{m}\"",
            Interlocked.Read(ref _stepTicks) / (double)Stopwatch.Frequency);
        Metric("sparsedecode_decode_tokens_per_second", "gauge", "Tokens generated per second over the last 10 seconds.",
            $"model=\"{m}\"", Math.Round(DecodeTokensPerSecond, 3));
        var byMethod = _latencies.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToArray();
        foreach (var (name, help, pick) in LatencyFamilies)
        {
            LatencyHistogram.RenderHeader(sb, name, help);
            foreach (var (method, latencies) in byMethod) pick(latencies).Render(sb, name, $"model=\"{m}\",method=\"{Escape(method)}\"");
        }
        Metric("sparsedecode_queue_depth", "gauge", "Requests waiting for a batch slot.", $"model=\"{m}\"", queueDepth);
        Metric("sparsedecode_queue_capacity", "gauge", "Requests the queue holds before it answers 429.", $"model=\"{m}\"", queueCapacity);
        Metric("sparsedecode_active_sequences", "gauge", "Sequences in the running batch.", $"model=\"{m}\"", active);
        Metric("sparsedecode_max_batch", "gauge", "Sequences the running batch holds at most.", $"model=\"{m}\"", maxBatch);
        Metric("sparsedecode_prefill_budget_tokens", "gauge", "Prompt tokens the last scheduler step could take (paced with --prefill-pacing on; +Inf: no limit).",
            $"model=\"{m}\"", prefillBudget == int.MaxValue ? double.PositiveInfinity : prefillBudget);
        Metric("sparsedecode_kv_cache_bytes", "gauge", "Bytes of KV cache pages held by active sequences.", $"model=\"{m}\"", kvBytes);
        if (kvPool.Total > 0)
        {
            Metric("sparsedecode_kv_pool_bytes", "gauge", "Bytes of KV cache the sequences may hold together: the GPU's page pool, the CPU's --kv-cache-gb bound.", $"model=\"{m}\"", kvPool.Total);
            Metric("sparsedecode_kv_pool_free_bytes", "gauge", "Bytes of the KV cache pool or bound no sequence holds.", $"model=\"{m}\"", kvPool.Free);
        }
        return sb.ToString();
    }

    private static readonly (string Name, string Help, Func<Latencies, LatencyHistogram> Pick)[] LatencyFamilies =
    [
        ("sparsedecode_time_to_first_token_seconds", "Time from a request's submission to its first token (queue wait and prefill included), by method.",
            l => l.FirstToken),
        ("sparsedecode_inter_token_latency_seconds",
            "Time between a sequence's consecutive scheduler steps that gave it tokens (a speculative pass may give several), by method.", l => l.TokenGap),
        ("sparsedecode_e2e_request_latency_seconds", "Time from a request's submission to its last token, by method.", l => l.RequestTime),
    ];

    private static string Escape(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
}
