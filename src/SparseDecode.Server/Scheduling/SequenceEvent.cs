namespace SparseDecode.Server.Scheduling;

/// <summary>A generated token's log-probability and, if asked for, the most likely alternatives at its step.</summary>
public sealed record TokenLogprob(int Id, string Token, double Logprob, IReadOnlyList<(int Id, string Token, double Logprob)> Top);

/// <summary>What the scheduler tells a request after each of its steps: text that may be sent (empty while a
/// possible stop string or an incomplete character is held back), the token's log-probability if asked for,
/// and on the last event why generation ended ("stop", "length") or the error that ended it.</summary>
public readonly record struct SequenceEvent(string Text, TokenLogprob? Logprob, string? FinishReason, Exception? Error)
{
    public bool IsFinal => FinishReason is not null || Error is not null;
}
