namespace SparseDecode.Server.Protocol;

/// <summary>The body of /v1/completions with echo and max_tokens 0: the prompt as text with its log-probabilities,
/// as OpenAI's legacy API returned them and lm-evaluation-harness reads them (the first token has none: null).</summary>
/// <summary>What every /v1/completions body starts with (serialized first, in this order).</summary>
public abstract class TextCompletionEnvelope
{
    public required string Id { get; init; }
    public string Object { get; init; } = "text_completion";
    public long Created { get; init; }
    public required string Model { get; init; }
}

public sealed class EchoCompletionResponse : TextCompletionEnvelope
{
    public required List<EchoChoice> Choices { get; init; }
    public required Usage Usage { get; init; }
}

public sealed class EchoChoice
{
    public string Text { get; init; } = "";
    public int Index { get; init; }
    public required EchoLogprobs Logprobs { get; init; }
    public string FinishReason { get; init; } = "length";
}

/// <summary>One entry per prompt token: its text, log p(token | tokens before it), the most likely alternatives
/// at that position, and its character offset in the text.</summary>
public sealed class EchoLogprobs
{
    public List<string> Tokens { get; init; } = [];
    public List<double?> TokenLogprobs { get; init; } = [];
    public List<Dictionary<string, double>?> TopLogprobs { get; init; } = [];
    public List<int> TextOffset { get; init; } = [];
}
