using System.Diagnostics;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Engine;

public sealed record GenerationOptions
{
    public int MaxTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>The attention method the sequence decodes through (null: dense attention).</summary>
    public SelectorSpec? Method { get; init; }
    public IReadOnlyCollection<int> StopTokenIds { get; init; } = [];
    public IAttentionObserver? Observer { get; init; }
    /// <summary>Called after each prefill chunk with (prompt tokens done, prompt tokens); for a progress bar.</summary>
    public Action<int, int>? PrefillProgress { get; init; }
    /// <summary>Self-speculative decoding (<see cref="SpeculativeDecoder"/>): `Method` drafts, dense attention
    /// verifies, and the output is dense decoding's. Null: decode through `Method` alone.</summary>
    public SpeculationOptions? Speculation { get; init; }
}

public sealed record GenerationResult(
    int[] Tokens,
    string FinishReason,
    int PromptTokens,
    double PromptSeconds,
    double DecodeSeconds,
    SpeculationStats? Speculation = null)
{
    public double PromptTokensPerSecond => PromptTokens / Math.Max(PromptSeconds, 1e-9);
    public double DecodeTokensPerSecond => Tokens.Length / Math.Max(DecodeSeconds, 1e-9);
}

/// <summary>Prefills a prompt densely, then decodes token by token through the chosen method's plan, calling back
/// with each new token as it is produced — or speculatively (<see cref="GenerationOptions.Speculation"/>). A plan
/// with a cache correction (<see cref="SelectionPlan.CacheCorrection"/> = T) has every T sparse steps' tokens run
/// again densely with the next one, in place of that one's decode step (the observer does not see these passes).
/// Runs on any engine (CPU or GPU).</summary>
public sealed class Generator(IInferenceEngine engine)
{
    public GenerationResult Generate(ReadOnlySpan<int> prompt, GenerationOptions options, Action<int>? onToken = null,
        CancellationToken cancel = default)
    {
        if (prompt.Length == 0) throw new ArgumentException("The prompt is empty.");
        if (options.MaxTokens < 0) throw new ArgumentException($"max tokens must be ≥ 0, got {options.MaxTokens}.");
        if (prompt.Length > engine.MaxContext)
            throw new ContextOverflowException($"The prompt has {prompt.Length} tokens but the model's context is {engine.MaxContext} tokens.");
        if (options.Observer is not null && !engine.SupportsObserver)
            throw new NotSupportedException($"Per-layer fidelity reports need the CPU engine; {engine.DeviceName} does not compute dense attention beside the method.");
        if (options.Speculation is { } speculation)
        {
            speculation.Validate();
            if (options.Method is null || options.Method.IsDense)
                throw new ArgumentException("Speculative decoding drafts with a sparse method; with dense attention there is nothing to draft.");
            if (options.Observer is not null)
                throw new ArgumentException("Per-layer fidelity reports watch the method's own decode steps; speculative decoding verifies them densely.");
            if (SpeculativeDecoder.CannotSample(options.Sampling) is string why) throw new ArgumentException(why);
        }
        int capacity = Math.Min(prompt.Length + Math.Max(1, options.MaxTokens), engine.MaxContext);
        var sampler = new Sampler(options.Sampling);
        var plan = engine.PlanFor(options.Method);
        using var sequence = engine.CreateSequence(capacity, plan);

        long t0 = Stopwatch.GetTimestamp();
        sequence.Prefill(prompt, progress: options.PrefillProgress);
        double promptSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;

        var tokens = new List<int>();
        string reason = "length";
        long t1 = Stopwatch.GetTimestamp();
        if (options.Speculation is not null)
        {
            var decoder = new SpeculativeDecoder(engine.Config.VocabSize, options.Speculation);
            reason = decoder.Run(sequence, plan!, sampler, options.MaxTokens, options.StopTokenIds, tokens, onToken, cancel);
            return new GenerationResult(tokens.ToArray(), reason, prompt.Length, promptSeconds, Stopwatch.GetElapsedTime(t1).TotalSeconds,
                decoder.Stats);
        }
        // TidalDecode's cache correction: the sparse steps since the last refill, run again densely
        var correction = plan is { CacheCorrection: > 0 } ? new DensePass(engine.Config.VocabSize, plan.CacheCorrection + 1) : null;
        int sparseSteps = 0;
        while (tokens.Count < options.MaxTokens)
        {
            cancel.ThrowIfCancellationRequested();
            int next = sampler.Next(sequence.Logits);
            tokens.Add(next);
            onToken?.Invoke(next);
            if (options.StopTokenIds.Contains(next))
            {
                reason = "stop";
                break;
            }
            if (tokens.Count == options.MaxTokens || sequence.Length >= capacity) break;
            if (correction is not null && sparseSteps == plan!.CacheCorrection)
            {
                // the sparse steps' tokens again, densely, and the next token with them
                sequence.Truncate(sequence.Length - sparseSteps);
                correction.Run(sequence, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tokens)[^(sparseSteps + 1)..]);
                sparseSteps = 0;
                continue;
            }
            sequence.Decode(next, options.Observer);
            sparseSteps++;
        }
        return new GenerationResult(tokens.ToArray(), reason, prompt.Length, promptSeconds, Stopwatch.GetElapsedTime(t1).TotalSeconds);
    }
}
