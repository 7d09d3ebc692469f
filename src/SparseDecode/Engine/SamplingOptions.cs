namespace SparseDecode.Engine;

/// <summary>Temperature 0 means greedy. TopK 0 and TopP 1 disable those filters. The penalties (OpenAI's, in
/// [−2, 2]; 0: off) lower each token's logit before anything else by FrequencyPenalty times the times the sampler has
/// drawn it and by PresencePenalty once it has drawn it at all: they count the tokens generated, not the prompt's.
/// LogitBias (OpenAI's logit_bias, values in [−100, 100]) is added to the logits of the tokens it names at every
/// draw.</summary>
public sealed record SamplingOptions(float Temperature = 0f, int TopK = 0, float TopP = 1f, ulong? Seed = null,
    float PresencePenalty = 0f, float FrequencyPenalty = 0f, IReadOnlyDictionary<int, float>? LogitBias = null)
{
    /// <summary>Whether a penalty is set: each draw then depends on the tokens drawn before it.</summary>
    public bool HasPenalties => PresencePenalty != 0 || FrequencyPenalty != 0;

    /// <summary>Whether the logits are changed before the draw (penalties or a bias).</summary>
    public bool AdjustsLogits => HasPenalties || LogitBias is { Count: > 0 };

    public static SamplingOptions Greedy { get; } = new();

    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentException($"temperature must be a finite number ≥ 0, got {Temperature}.");
        if (TopK < 0) throw new ArgumentException($"top-k must be ≥ 0, got {TopK}.");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}.");
        if (!(PresencePenalty >= -2 && PresencePenalty <= 2)) throw new ArgumentException($"presence penalty must be in [-2, 2], got {PresencePenalty}.");
        if (!(FrequencyPenalty >= -2 && FrequencyPenalty <= 2)) throw new ArgumentException($"frequency penalty must be in [-2, 2], got {FrequencyPenalty}.");
        if (LogitBias is null) return;
        foreach (var (token, bias) in LogitBias)
        {
            if (token < 0) throw new ArgumentException($"logit bias names token {token}; token ids are ≥ 0.");
            if (!(bias >= -100 && bias <= 100)) throw new ArgumentException($"the logit bias of token {token} must be in [-100, 100], got {bias}.");
        }
    }
}
