using Microsoft.Extensions.Logging;
using SparseDecode.Server.Scheduling;

namespace SparseDecode.Server.Hosting;

public sealed record ServerOptions
{
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests); SparseServer.BaseAddress tells which.</summary>
    public int Port { get; init; } = 8080;
    /// <summary>The id /v1/models reports; default: the model directory's name.</summary>
    public string? ModelName { get; init; }
    /// <summary>The sparse-attention method of requests without a `sparse` field, and its budget and parameters.</summary>
    public string Method { get; init; } = "dense";
    public string Budget { get; init; } = "256";
    public IReadOnlyDictionary<string, string> Params { get; init; } = new Dictionary<string, string>();
    public SchedulerOptions Scheduler { get; init; } = new();
    /// <summary>The backend the model loads on (CPU by default). On the GPU the server allocates one cache slot per
    /// batch place plus one for prompt scoring.</summary>
    public Engine.EngineOptions Engine { get; init; } = new();
    /// <summary>max_tokens above this is refused with 400.</summary>
    public int MaxTokensLimit { get; init; } = 4096;
    /// <summary>max_tokens when a completions request gives none (OpenAI's default for that endpoint).</summary>
    public int DefaultCompletionTokens { get; init; } = 16;
    /// <summary>max_tokens when a chat request gives none (capped by the room left in the context).</summary>
    public int DefaultChatTokens { get; init; } = 512;
    /// <summary>Request bodies above this many bytes are refused with 413.</summary>
    public long MaxBodyBytes { get; init; } = 1 << 20;
    public LogLevel LogLevel { get; init; } = LogLevel.Information;
    /// <summary>When set, every /v1 route requires "Authorization: Bearer KEY" (401 otherwise); /health and
    /// /metrics stay open for probes and scrapers.</summary>
    public string? ApiKey { get; init; }
    /// <summary>On shutdown (SIGTERM, Ctrl+C) requests in flight get this long to finish; then each remaining
    /// stream ends with an error event and [DONE], each remaining request with 503.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>A stream whose client takes longer than this to accept one event (the connection's buffers being
    /// full) is ended by closing the connection, which frees its batch place.</summary>
    public TimeSpan StreamWriteTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Tokenizing one request's text may take this long; past it the request is refused with 400
    /// (tokenization_timeout). A megabyte of text takes a fraction of a second with a usual tokenizer.</summary>
    public TimeSpan TokenizeTimeLimit { get; init; } = TimeSpan.FromSeconds(5);
}
