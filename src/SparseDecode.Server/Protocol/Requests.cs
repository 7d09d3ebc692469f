using SparseDecode.Server.Chat;
using SparseDecode.Cpu;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Server.Protocol;

/// <summary>The `sparse` extension field: which sparse-attention method decodes this request. Null members take
/// the server's defaults (--method, --budget, --param). `Speculate` (null: off) makes the method draft and dense
/// attention verify (self-speculative decoding), so the output is dense decoding's.</summary>
public sealed record SparseRequest(string? Method, string? Budget, IReadOnlyDictionary<string, string>? Params,
    SpeculationOptions? Speculate = null);

/// <summary>What the completions and chat endpoints share, validated.</summary>
public sealed record GenerationParameters
{
    /// <summary>Null: the endpoint's default, capped by the room left in the context.</summary>
    public int? MaxTokens { get; init; }
    public float Temperature { get; init; } = 1f;
    public float TopP { get; init; } = 1f;
    public int TopK { get; init; }
    public ulong? Seed { get; init; }
    /// <summary>OpenAI's penalties (0: off), counted over the tokens generated (<see cref="SamplingOptions"/>).</summary>
    public float PresencePenalty { get; init; }
    public float FrequencyPenalty { get; init; }
    /// <summary>OpenAI's logit_bias: token id → a value in [−100, 100] added to its logit at every draw (null: none).</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    public IReadOnlyList<string> Stop { get; init; } = [];
    public bool Stream { get; init; }
    public bool IncludeUsage { get; init; }
    /// <summary>Null: no log-probabilities; otherwise how many alternatives to report per token (0 allowed).</summary>
    public int? Logprobs { get; init; }
    public SparseRequest? Sparse { get; init; }
    /// <summary>Extension (as in vLLM): keep generating past the end-of-sequence token, e.g. for benchmarks.</summary>
    public bool IgnoreEos { get; init; }
}

public sealed record CompletionRequest(string? PromptText, int[]? PromptIds, GenerationParameters Parameters)
{
    /// <summary>echo with max_tokens 0: return the prompt with its log-probabilities, generate nothing.</summary>
    public bool Echo { get; init; }
}

public sealed record ChatRequest(IReadOnlyList<ChatMessage> Messages, GenerationParameters Parameters);
