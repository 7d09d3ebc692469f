using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using SparseDecode.Engine;
using SparseDecode.Tokenization;
using SparseDecode.Server.Protocol;
using SparseDecode.Server.Scheduling;
using SparseDecode.Cpu;
using SparseDecode.Server.Serving;

namespace SparseDecode.Server.Hosting;

/// <summary>The routes: POST /v1/completions and /v1/chat/completions (JSON or server-sent events), GET /v1/models,
/// /health and /metrics. Every handler is a plain RequestDelegate (no reflection-based binding, so the trimmed
/// build keeps working) and every failure becomes OpenAI's error object with a 4xx or 5xx status.</summary>
internal sealed class OpenAiEndpoints(
    ServedModel model, BatchScheduler scheduler, ServerMetrics metrics, ServerOptions options, PlanFactory plans, ILogger log)
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    // Requests tokenize on the request threads; at most this many at once leaves a core for /health, /metrics and
    // the scheduler however slow the tokenizer's patterns are on the texts sent.
    private readonly SemaphoreSlim _tokenizing = new(Math.Max(1, Environment.ProcessorCount - 1));

    public void Map(WebApplication app)
    {
        app.Use(Guard);
        app.MapPost("/v1/completions", Completions);
        app.MapPost("/v1/chat/completions", Chat);
        app.MapGet("/v1/models", Models);
        app.MapGet("/health", Health);
        app.MapGet("/metrics", Metrics);
    }

    private static string EndpointLabel(PathString path) => path.Value switch
    {
        "/v1/completions" => "completions",
        "/v1/chat/completions" => "chat_completions",
        "/v1/models" => "models",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    };

    /// <summary>Outermost middleware: turns every exception and every bare 404/405 into an error object, and counts
    /// requests by endpoint and status. Nothing a client sends can take the process down.</summary>
    private async Task Guard(HttpContext ctx, RequestDelegate next)
    {
        try
        {
            if (options.ApiKey is { Length: > 0 } key && ctx.Request.Path.StartsWithSegments("/v1") && !Authorized(ctx, key))
            {
                throw new ApiException(401, "This server requires an API key: send the header 'Authorization: Bearer KEY'.", null, "invalid_api_key");
            }
            await next(ctx);
            if (ctx.Response is { HasStarted: false, StatusCode: 404 or 405 })
                await WriteError(ctx, ctx.Response.StatusCode == 404
                    ? new ApiException(404, $"No route {ctx.Request.Method} {ctx.Request.Path}: this server serves POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health and GET /metrics.", null, "not_found")
                    : new ApiException(405, $"{ctx.Request.Method} is not allowed on {ctx.Request.Path}.", null, "method_not_allowed"));
        }
        catch (ApiException e) when (!ctx.Response.HasStarted)
        {
            // One line per refusal, never a stack trace: a client cannot flood the log with them.
            log.LogInformation("{Method} {Path} answered {Status} {Code}: {Message}", ctx.Request.Method, ctx.Request.Path, e.Status, e.Code, e.Message);
            await WriteError(ctx, e);
        }
        catch (BadHttpRequestException e) when (!ctx.Response.HasStarted)
        {
            // Kestrel's own refusals while reading the body: too large (413), bad framing, client too slow.
            string message = e.StatusCode == 413 ? $"The request body exceeds the limit of {options.MaxBodyBytes} bytes." : e.Message;
            await WriteError(ctx, new ApiException(e.StatusCode, message, null, e.StatusCode == 413 ? "request_too_large" : "bad_request"));
        }
        catch (TokenizerTimeoutException e) when (!ctx.Response.HasStarted)
        {
            // The client's text against the tokenizer file's pattern: refused, one line, no stack trace.
            log.LogWarning("Request {Method} {Path} refused: {Message}", ctx.Request.Method, ctx.Request.Path, e.Message);
            await WriteError(ctx, ApiException.BadRequest(e.Message, null, "tokenization_timeout"));
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e) when (!ctx.Response.HasStarted)
        {
            log.LogError(e, "Request {Method} {Path} failed", ctx.Request.Method, ctx.Request.Path);
            await WriteError(ctx, new ApiException(500, "The server failed on this request: " + e.Message, null, "internal_error"));
        }
        catch (Exception e)
        {
            log.LogError(e, "Request {Method} {Path} failed after the response started", ctx.Request.Method, ctx.Request.Path);
        }
        finally
        {
            // A response the client did not wait for is not a 200: 499 (client closed request), as nginx counts it.
            metrics.RequestFinished(EndpointLabel(ctx.Request.Path), ctx.RequestAborted.IsCancellationRequested ? ServerMetrics.ClientClosed : ctx.Response.StatusCode);
        }
    }

    /// <summary>Whether the request carries "Authorization: Bearer KEY", compared in constant time.</summary>
    private static bool Authorized(HttpContext ctx, string key)
    {
        string header = ctx.Request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        if (!header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)) return false;
        return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            Encoding.UTF8.GetBytes(header[scheme.Length..].Trim()), Encoding.UTF8.GetBytes(key));
    }

    private static async Task WriteError(HttpContext ctx, ApiException e)
    {
        ctx.Response.Clear();
        ctx.Response.StatusCode = e.Status;
        if (e.Status == 429) ctx.Response.Headers.RetryAfter = "1";
        if (e.Status == 401) ctx.Response.Headers.WWWAuthenticate = "Bearer";
        var body = new ErrorResponse { Error = new ErrorDetail { Message = e.Message, Type = e.Type, Param = e.Param, Code = e.Code } };
        await WriteJson(ctx, body, ServerJson.Api.ErrorResponse);
    }

    private static Task WriteJson<T>(HttpContext ctx, T value, JsonTypeInfo<T> type)
    {
        ctx.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(ctx.Response.Body, value, type, ctx.RequestAborted);
    }

    // ---------------------------------------------------------------- simple routes

    private Task Models(HttpContext ctx) => WriteJson(ctx, new ModelList
    {
        Data = [new ModelCard { Id = model.Id, Created = _created, MaxModelLen = model.Context }],
    }, ServerJson.Api.ModelList);

    private Task Health(HttpContext ctx) => WriteJson(ctx, new HealthResponse
    {
        Model = model.Id,
        ActiveSequences = scheduler.ActiveCount,
        QueueDepth = scheduler.QueueDepth,
    }, ServerJson.Api.HealthResponse);

    private Task Metrics(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        string text = metrics.Render(model.Id, scheduler.QueueDepth, scheduler.Options.MaxQueue, scheduler.ActiveCount,
            scheduler.Options.MaxBatch, scheduler.KvCacheBytes, model.Engine.KvPool, scheduler.LastPrefillBudget);
        return ctx.Response.WriteAsync(text, ctx.RequestAborted);
    }

    // ---------------------------------------------------------------- generation routes

    private async Task<ReadOnlyMemory<byte>> ReadBody(HttpContext ctx)
    {
        long limit = options.MaxBodyBytes;
        if (ctx.Request.ContentLength is long declared && declared > limit)
            throw new ApiException(413, $"The request body has {declared} bytes; the limit is {limit}.", null, "request_too_large");
        var buffer = new ArrayBufferWriter<byte>(4096);
        while (true)
        {
            var memory = buffer.GetMemory(16384);
            int n = await ctx.Request.Body.ReadAsync(memory, ctx.RequestAborted);
            if (n == 0) break;
            buffer.Advance(n);
            if (buffer.WrittenCount > limit)
                throw new ApiException(413, $"The request body exceeds the limit of {limit} bytes.", null, "request_too_large");
        }
        if (buffer.WrittenCount == 0) throw new ApiException(400, "The request body is empty; send a JSON object.", null, "invalid_json");
        return buffer.WrittenMemory;
    }

    private async Task Completions(HttpContext ctx)
    {
        var request = RequestParser.ParseCompletion(await ReadBody(ctx), options.MaxTokensLimit);
        int[] prompt;
        if (request.PromptIds is int[] ids)
        {
            int vocab = model.Engine.Config.VocabSize;
            for (int i = 0; i < ids.Length; i++)
                if (ids[i] >= vocab)
                    throw ApiException.BadRequest($"'prompt' token id {ids[i]} (element {i}) is outside the vocabulary of {vocab}.", "prompt");
            prompt = ids;
        }
        else prompt = await Encode(ctx, request.PromptText!, addSpecialTokens: true);
        if (request.Echo)
        {
            await WriteJson(ctx, PromptScoring.Score(model, prompt, request.Parameters.Logprobs, "cmpl-" + Guid.NewGuid().ToString("N")[..24], Created),
                ServerJson.Api.EchoCompletionResponse);
            return;
        }
        var seq = Submit(ctx, prompt, request.Parameters, options.DefaultCompletionTokens, [], "prompt");
        var writer = new CompletionWriter("cmpl-" + Guid.NewGuid().ToString("N")[..24], model.Id, request.Parameters.Logprobs is not null);
        await Respond(ctx, seq, request.Parameters, writer);
    }

    private async Task Chat(HttpContext ctx)
    {
        var request = RequestParser.ParseChat(await ReadBody(ctx), options.MaxTokensLimit);
        var template = model.Template;
        string text = template.Render(request.Messages);
        int[] prompt = await Encode(ctx, text, template.EncodeWithSpecialTokens);
        var seq = Submit(ctx, prompt, request.Parameters, options.DefaultChatTokens, template.StopStrings, "messages");
        var writer = new ChatWriter("chatcmpl-" + Guid.NewGuid().ToString("N")[..24], model.Id, request.Parameters.Logprobs is not null);
        await Respond(ctx, seq, request.Parameters, writer);
    }

    /// <summary>The ids of a request's text, under the tokenization gate and time limit.</summary>
    private async Task<int[]> Encode(HttpContext ctx, string text, bool addSpecialTokens)
    {
        await _tokenizing.WaitAsync(ctx.RequestAborted);
        try
        {
            return CheckEncoded(model.Codec.Encode(text, addSpecialTokens, options.TokenizeTimeLimit));
        }
        finally
        {
            _tokenizing.Release();
        }
    }

    /// <summary>A tokenizer that does not match the checkpoint yields ids past its embedding table, which would fail
    /// deep inside a step; refused here with one sentence (the server's fault, hence 500, logged as one line).</summary>
    private int[] CheckEncoded(int[] ids)
    {
        int vocab = model.Engine.Config.VocabSize;
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab)
                throw new ApiException(500, $"The tokenizer produced token id {id}, outside the model's vocabulary of {vocab}: tokenizer.json does not match the checkpoint.",
                    null, "tokenizer_mismatch");
        return ids;
    }

    /// <summary>Checks the request against the context, makes its plan and sampler, and queues it.</summary>
    private Sequence Submit(HttpContext ctx, int[] prompt, GenerationParameters p, int defaultMaxTokens, IReadOnlyList<string> extraStops, string promptParam)
    {
        if (prompt.Length == 0) throw ApiException.BadRequest("The prompt is empty.", promptParam);
        int context = model.Context;
        int room = context - prompt.Length;
        if (room < 1)
            throw ApiException.BadRequest($"This model's maximum context length is {context} tokens. However, your prompt has {prompt.Length} tokens, which leaves no room for the completion. Please shorten the prompt.",
                promptParam, "context_length_exceeded");
        int maxTokens = p.MaxTokens ?? Math.Min(defaultMaxTokens, room);
        if (prompt.Length + maxTokens > context)
            throw ApiException.BadRequest($"This model's maximum context length is {context} tokens. However, you requested {prompt.Length + maxTokens} tokens ({prompt.Length} in the prompt, {maxTokens} for the completion). Please reduce the prompt or max_tokens.",
                "max_tokens", "context_length_exceeded");
        var plan = plans.Create(p.Sparse);
        if (p.Sparse?.Speculate is not null && SpeculativeDecoder.CannotDraft(plan, model.SpeculativeSequences) is string why)
            throw ApiException.BadRequest(why, "sparse.speculate", "invalid_sparse");
        int vocab = model.Engine.Config.VocabSize;
        if (p.LogitBias?.Keys.FirstOrDefault(t => t >= vocab, -1) is int outside and >= 0)
            throw ApiException.BadRequest($"'logit_bias' names token {outside}, but this model's vocabulary has {vocab} tokens (ids 0 to {vocab - 1}).", "logit_bias");
        var sampling = new SamplingOptions(p.Temperature, p.TopK, p.TopP, p.Seed, p.PresencePenalty, p.FrequencyPenalty, p.LogitBias);
        if (p.Sparse?.Speculate is not null && SpeculativeDecoder.CannotSample(sampling) is string cannot)
            throw ApiException.BadRequest(cannot + " Leave out 'sparse.speculate' or 'presence_penalty' and 'frequency_penalty'.", "sparse.speculate", "invalid_sparse");
        var request = new SequenceRequest
        {
            Prompt = prompt,
            MaxTokens = maxTokens,
            Sampling = sampling,
            Plan = plan,
            Speculation = p.Sparse?.Speculate,
            StopStrings = extraStops.Count == 0 ? p.Stop : [.. p.Stop, .. extraStops],
            IgnoreEos = p.IgnoreEos,
            Logprobs = p.Logprobs,
            // The address, not a header: a client cannot claim to be many clients (or another one).
            Client = ctx.Connection.RemoteIpAddress?.ToString() ?? "",
        };
        return scheduler.Submit(request);
    }

    /// <summary>Relays a sequence's events as one JSON body or as server-sent events. The sequence is cancelled
    /// whenever this returns early (client gone, write failed), which frees its batch slot and KV cache.</summary>
    private async Task Respond(HttpContext ctx, Sequence seq, GenerationParameters p, IResponseWriter writer)
    {
        var aborted = ctx.RequestAborted;
        using var onAbort = aborted.Register(static s => ((Sequence)s!).Cancel(), seq);
        try
        {
            if (!p.Stream)
            {
                var text = new StringBuilder();
                var logprobs = new List<TokenLogprob>();
                await foreach (var e in seq.Events.ReadAllAsync(aborted))
                {
                    if (e.Error is not null) throw AsApiException(e.Error);
                    text.Append(e.Text);
                    if (e.Logprob is not null) logprobs.Add(e.Logprob);
                    if (e.FinishReason is not null)
                    {
                        await writer.WriteFull(ctx, text.ToString(), logprobs, e.FinishReason, Usage(seq));
                        return;
                    }
                }
                if (aborted.IsCancellationRequested) return;
                throw new ApiException(503, "The server is shutting down.", null, "shutting_down");
            }

            ctx.Response.StatusCode = 200;
            ctx.Response.ContentType = "text/event-stream; charset=utf-8";
            ctx.Response.Headers.CacheControl = "no-cache";
            ctx.Response.Headers["X-Accel-Buffering"] = "no";
            // Armed while an event is being written: a client that stops reading fills the connection's bounded
            // buffers, the write waits, and at the timeout the connection is closed (which cancels the sequence).
            using var stall = new CancellationTokenSource();
            using var onStall = stall.Token.Register(static s => StalledStream((StallState)s!), new StallState(ctx, seq, log, options.StreamWriteTimeout));
            stall.CancelAfter(options.StreamWriteTimeout);
            await writer.Begin(ctx, this);
            await ctx.Response.Body.FlushAsync(aborted);
            // Waiting in line and for the prompt's prefill is not the client's doing either.
            stall.CancelAfter(Timeout.InfiniteTimeSpan);
            await foreach (var e in seq.Events.ReadAllAsync(aborted))
            {
                stall.CancelAfter(options.StreamWriteTimeout);
                if (e.Error is not null)
                {
                    var api = AsApiException(e.Error);
                    await Send(ctx, new ErrorResponse { Error = new ErrorDetail { Message = api.Message, Type = api.Type, Param = api.Param, Code = api.Code } },
                        ServerJson.Api.ErrorResponse);
                    break;
                }
                if (e.Text.Length > 0 || e.Logprob is not null) await writer.Delta(ctx, this, e.Text, e.Logprob);
                if (e.FinishReason is not null)
                {
                    await writer.Finish(ctx, this, e.FinishReason);
                    if (p.IncludeUsage) await writer.Usage(ctx, this, Usage(seq));
                    break;
                }
                // Waiting for the next token is not the client's doing.
                stall.CancelAfter(Timeout.InfiniteTimeSpan);
            }
            stall.CancelAfter(options.StreamWriteTimeout);
            await ctx.Response.Body.WriteAsync(Done, aborted);
            await ctx.Response.Body.FlushAsync(aborted);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // Client disconnected: the registration above has cancelled the sequence.
        }
        finally
        {
            seq.Cancel();
        }
    }

    private sealed record StallState(HttpContext Context, Sequence Sequence, ILogger Log, TimeSpan Timeout);

    private static void StalledStream(StallState s)
    {
        s.Log.LogWarning("Stream of request {Id} closed: its client accepted no data for {Seconds} s.", s.Sequence.Id, s.Timeout.TotalSeconds);
        s.Sequence.Cancel();
        s.Context.Abort();
    }

    private static Usage Usage(Sequence seq) => new()
    {
        PromptTokens = seq.PromptTokens,
        CompletionTokens = seq.CompletionTokens,
        TotalTokens = seq.PromptTokens + seq.CompletionTokens,
        PromptTokensDetails = seq.CachedPromptTokens > 0 ? new PromptTokensDetails { CachedTokens = seq.CachedPromptTokens } : null,
        Speculation = seq.Speculation is { } s
            ? new SpeculationUsage { Passes = s.Passes, DraftedTokens = s.Drafted, AcceptedTokens = s.Accepted, Exact = s.Exact }
            : null,
    };

    private ApiException AsApiException(Exception e)
    {
        if (e is ApiException api) return api;
        if (e is ContextOverflowException) return ApiException.BadRequest(e.Message, null, "context_length_exceeded");
        if (e is KvCacheFullException) return new ApiException(503, e.Message, null, "kv_cache_full");
        if (e is NonFiniteLogitsException)
        {
            // The model's fault, not the client's, and the same for every request: one line, no stack trace.
            log.LogError("Generation stopped: {Message}", e.Message);
            return new ApiException(500, e.Message, null, "non_finite_logits");
        }
        log.LogError(e, "Generation failed");
        return new ApiException(500, "Generation failed: " + e.Message, null, "internal_error");
    }

    /// <summary>Writes one server-sent event and flushes it to the client.</summary>
    internal async Task Send<T>(HttpContext ctx, T value, JsonTypeInfo<T> type)
    {
        var body = ctx.Response.Body;
        var aborted = ctx.RequestAborted;
        await body.WriteAsync(DataPrefix, aborted);
        await JsonSerializer.SerializeAsync(body, value, type, aborted);
        await body.WriteAsync(EventEnd, aborted);
        await body.FlushAsync(aborted);
    }

    internal long Created => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    internal static string Format(double x) => x.ToString("R", CultureInfo.InvariantCulture);
}
