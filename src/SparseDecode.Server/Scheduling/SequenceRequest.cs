using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Server.Scheduling;

/// <summary>A validated generation job: prompt ids, how many tokens at most, sampling, the plan that decodes
/// it (null: dense) and the stop conditions.</summary>
public sealed record SequenceRequest
{
    public required int[] Prompt { get; init; }
    public required int MaxTokens { get; init; }
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    public SelectionPlan? Plan { get; init; }
    /// <summary>Null: every token decoded through <see cref="Plan"/> (or densely); otherwise the plan drafts and a
    /// dense pass verifies (<see cref="SpeculativeDecoder"/>), so the output is dense decoding's. Needs a plan.</summary>
    public SpeculationOptions? Speculation { get; init; }
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    public bool IgnoreEos { get; init; }
    /// <summary>Null: no log-probabilities; otherwise the number of alternatives per token.</summary>
    public int? Logprobs { get; init; }
    /// <summary>Who asked (the remote address): admission is fair between clients and capped per client.</summary>
    public string Client { get; init; } = "";
}
