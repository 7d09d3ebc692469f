using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SparseDecode.Server.Protocol;

// The response bodies of the OpenAI API, as plain types for the source-generated serializer (ServerJson).
// Fields OpenAI writes as null (logprobs, finish_reason) stay; optional extras are left out when null.

public sealed class ErrorResponse
{
    public required ErrorDetail Error { get; init; }
}

public sealed class ErrorDetail
{
    public required string Message { get; init; }
    public required string Type { get; init; }
    public string? Param { get; init; }
    public string? Code { get; init; }
}

public sealed class Usage
{
    public int PromptTokens { get; init; }
    public int CompletionTokens { get; init; }
    public int TotalTokens { get; init; }
    /// <summary>Present when part of the prompt came from a kept prompt's cache instead of being prefilled.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public PromptTokensDetails? PromptTokensDetails { get; init; }
    /// <summary>Extension, present when the request speculated (`sparse.speculate`).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public SpeculationUsage? Speculation { get; init; }
}

/// <summary>OpenAI's breakdown of the prompt tokens: how many were served from the prompt cache.</summary>
public sealed class PromptTokensDetails
{
    public int CachedTokens { get; init; }
}

/// <summary>What self-speculative decoding did for one request: dense verification passes, draft tokens the method
/// proposed and how many of them the passes kept, and whether the passes were the decode step's exact arithmetic.</summary>
public sealed class SpeculationUsage
{
    public int Passes { get; init; }
    public long DraftedTokens { get; init; }
    public long AcceptedTokens { get; init; }
    public bool Exact { get; init; }
}

public sealed class CompletionResponse : TextCompletionEnvelope
{
    public required List<CompletionChoice> Choices { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; init; }
}

public sealed class CompletionChoice
{
    public string Text { get; init; } = "";
    public int Index { get; init; }
    public CompletionLogprobs? Logprobs { get; init; }
    public string? FinishReason { get; init; }
}

/// <summary>The legacy completions form: parallel lists, one entry per generated token.</summary>
public sealed class CompletionLogprobs
{
    public List<string> Tokens { get; init; } = [];
    public List<double> TokenLogprobs { get; init; } = [];
    public List<Dictionary<string, double>>? TopLogprobs { get; init; }
    public List<int> TextOffset { get; init; } = [];
}

public sealed class ChatCompletionResponse
{
    public required string Id { get; init; }
    public string Object { get; init; } = "chat.completion";
    public long Created { get; init; }
    public required string Model { get; init; }
    public required List<ChatChoice> Choices { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; init; }
}

public sealed class ChatChoice
{
    public int Index { get; init; }
    public required ChatMessageBody Message { get; init; }
    public ChatLogprobs? Logprobs { get; init; }
    public string? FinishReason { get; init; }
}

public sealed class ChatMessageBody
{
    public string Role { get; init; } = "assistant";
    public string Content { get; init; } = "";
}

public sealed class ChatCompletionChunk
{
    public required string Id { get; init; }
    public string Object { get; init; } = "chat.completion.chunk";
    public long Created { get; init; }
    public required string Model { get; init; }
    public required List<ChatChunkChoice> Choices { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Usage? Usage { get; init; }
}

public sealed class ChatChunkChoice
{
    public int Index { get; init; }
    public required ChatDelta Delta { get; init; }
    public ChatLogprobs? Logprobs { get; init; }
    public string? FinishReason { get; init; }
}

public sealed class ChatDelta
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Role { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Content { get; init; }
}

public sealed class ChatLogprobs
{
    public List<ChatTokenLogprob> Content { get; init; } = [];
}

public sealed class ChatTokenLogprob
{
    public required string Token { get; init; }
    public double Logprob { get; init; }
    public List<int>? Bytes { get; init; }
    public List<ChatTopLogprob> TopLogprobs { get; init; } = [];
}

public sealed class ChatTopLogprob
{
    public required string Token { get; init; }
    public double Logprob { get; init; }
    public List<int>? Bytes { get; init; }
}

public sealed class ModelList
{
    public string Object { get; init; } = "list";
    public required List<ModelCard> Data { get; init; }
}

public sealed class ModelCard
{
    public required string Id { get; init; }
    public string Object { get; init; } = "model";
    public long Created { get; init; }
    public string OwnedBy { get; init; } = "sparsedecode";
    /// <summary>The model's context in tokens (an extension vLLM also reports).</summary>
    public int MaxModelLen { get; init; }
}

public sealed class HealthResponse
{
    public string Status { get; init; } = "ok";
    public required string Model { get; init; }
    public int ActiveSequences { get; init; }
    public int QueueDepth { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = false)]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(EchoCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(HealthResponse))]
public sealed partial class ServerJson : JsonSerializerContext
{
    /// <summary>The contracts with text written as UTF-8 rather than \uXXXX escapes (the default encoder escapes
    /// HTML-sensitive and non-ASCII characters, which is valid but inflates streamed text and is not what OpenAI sends).</summary>
    public static ServerJson Api { get; } = new(new JsonSerializerOptions
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    });
}
