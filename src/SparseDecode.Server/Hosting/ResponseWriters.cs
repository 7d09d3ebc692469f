using System.Text;
using Microsoft.AspNetCore.Http;
using SparseDecode.Server.Protocol;
using SparseDecode.Server.Scheduling;

namespace SparseDecode.Server.Hosting;

/// <summary>The two response shapes (text completion, chat completion), whole or as a stream of chunks.</summary>
internal interface IResponseWriter
{
    Task WriteFull(HttpContext ctx, string text, IReadOnlyList<TokenLogprob> logprobs, string finishReason, Usage usage);
    Task Begin(HttpContext ctx, OpenAiEndpoints sse);
    Task Delta(HttpContext ctx, OpenAiEndpoints sse, string text, TokenLogprob? logprob);
    Task Finish(HttpContext ctx, OpenAiEndpoints sse, string finishReason);
    Task Usage(HttpContext ctx, OpenAiEndpoints sse, Usage usage);
}

internal sealed class CompletionWriter(string id, string model, bool logprobs) : IResponseWriter
{
    private int _offset;

    public Task WriteFull(HttpContext ctx, string text, IReadOnlyList<TokenLogprob> lps, string finishReason, Usage usage)
    {
        var body = new CompletionResponse
        {
            Id = id,
            Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            Model = model,
            Choices = [new CompletionChoice { Text = text, Logprobs = logprobs ? Convert(lps) : null, FinishReason = finishReason }],
            Usage = usage,
        };
        ctx.Response.ContentType = "application/json";
        return System.Text.Json.JsonSerializer.SerializeAsync(ctx.Response.Body, body, ServerJson.Api.CompletionResponse, ctx.RequestAborted);
    }

    private CompletionLogprobs Convert(IReadOnlyList<TokenLogprob> lps)
    {
        var result = new CompletionLogprobs { TopLogprobs = [] };
        foreach (var lp in lps)
        {
            result.Tokens.Add(lp.Token);
            result.TokenLogprobs.Add(lp.Logprob);
            result.TextOffset.Add(_offset);
            _offset += lp.Token.Length;
            var top = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var (_, token, logprob) in lp.Top) top.TryAdd(token, logprob);
            result.TopLogprobs!.Add(top);
        }
        return result;
    }

    private CompletionResponse Chunk(string text, CompletionLogprobs? lps, string? finishReason) => new()
    {
        Id = id,
        Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        Model = model,
        Choices = [new CompletionChoice { Text = text, Logprobs = lps, FinishReason = finishReason }],
    };

    public Task Begin(HttpContext ctx, OpenAiEndpoints sse) => Task.CompletedTask;

    public Task Delta(HttpContext ctx, OpenAiEndpoints sse, string text, TokenLogprob? logprob) =>
        sse.Send(ctx, Chunk(text, logprobs && logprob is not null ? Convert([logprob]) : null, null), ServerJson.Api.CompletionResponse);

    public Task Finish(HttpContext ctx, OpenAiEndpoints sse, string finishReason) =>
        sse.Send(ctx, Chunk("", null, finishReason), ServerJson.Api.CompletionResponse);

    public Task Usage(HttpContext ctx, OpenAiEndpoints sse, Usage usage) =>
        sse.Send(ctx, new CompletionResponse { Id = id, Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), Model = model, Choices = [], Usage = usage },
            ServerJson.Api.CompletionResponse);
}

internal sealed class ChatWriter(string id, string model, bool logprobs) : IResponseWriter
{
    public Task WriteFull(HttpContext ctx, string text, IReadOnlyList<TokenLogprob> lps, string finishReason, Usage usage)
    {
        var body = new ChatCompletionResponse
        {
            Id = id,
            Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            Model = model,
            Choices = [new ChatChoice { Message = new ChatMessageBody { Content = text }, Logprobs = logprobs ? Convert(lps) : null, FinishReason = finishReason }],
            Usage = usage,
        };
        ctx.Response.ContentType = "application/json";
        return System.Text.Json.JsonSerializer.SerializeAsync(ctx.Response.Body, body, ServerJson.Api.ChatCompletionResponse, ctx.RequestAborted);
    }

    private static List<int> Bytes(string token) => [.. Encoding.UTF8.GetBytes(token)];

    private static ChatLogprobs Convert(IReadOnlyList<TokenLogprob> lps)
    {
        var result = new ChatLogprobs();
        foreach (var lp in lps)
        {
            var entry = new ChatTokenLogprob { Token = lp.Token, Logprob = lp.Logprob, Bytes = Bytes(lp.Token) };
            foreach (var (_, token, logprob) in lp.Top)
                entry.TopLogprobs.Add(new ChatTopLogprob { Token = token, Logprob = logprob, Bytes = Bytes(token) });
            result.Content.Add(entry);
        }
        return result;
    }

    private ChatCompletionChunk Chunk(ChatDelta delta, ChatLogprobs? lps, string? finishReason) => new()
    {
        Id = id,
        Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        Model = model,
        Choices = [new ChatChunkChoice { Delta = delta, Logprobs = lps, FinishReason = finishReason }],
    };

    public Task Begin(HttpContext ctx, OpenAiEndpoints sse) =>
        sse.Send(ctx, Chunk(new ChatDelta { Role = "assistant", Content = "" }, null, null), ServerJson.Api.ChatCompletionChunk);

    public Task Delta(HttpContext ctx, OpenAiEndpoints sse, string text, TokenLogprob? logprob) =>
        sse.Send(ctx, Chunk(new ChatDelta { Content = text }, logprobs && logprob is not null ? Convert([logprob]) : null, null),
            ServerJson.Api.ChatCompletionChunk);

    public Task Finish(HttpContext ctx, OpenAiEndpoints sse, string finishReason) =>
        sse.Send(ctx, Chunk(new ChatDelta(), null, finishReason), ServerJson.Api.ChatCompletionChunk);

    public Task Usage(HttpContext ctx, OpenAiEndpoints sse, Usage usage) =>
        sse.Send(ctx, new ChatCompletionChunk { Id = id, Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), Model = model, Choices = [], Usage = usage },
            ServerJson.Api.ChatCompletionChunk);
}
