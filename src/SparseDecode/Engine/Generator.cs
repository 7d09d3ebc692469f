using System.Diagnostics;
using SparseDecode.Attention;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Engine;

public sealed record GenerationOptions
{
    public int MaxTokens { get; init; } = 128;
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    public DType CacheType { get; init; } = DType.F32;
    /// <summary>Makes the selector for this sequence (null: dense attention).</summary>
    public Func<ModelConfig, IKvSelector>? Selector { get; init; }
    public IReadOnlyCollection<int> StopTokenIds { get; init; } = [];
    public IAttentionObserver? Observer { get; init; }
    /// <summary>Called after each prefill chunk with (prompt tokens done, prompt tokens); for a progress bar.</summary>
    public Action<int, int>? PrefillProgress { get; init; }
}

public sealed record GenerationResult(
    int[] Tokens,
    string FinishReason,
    int PromptTokens,
    double PromptSeconds,
    double DecodeSeconds)
{
    public double PromptTokensPerSecond => PromptTokens / Math.Max(PromptSeconds, 1e-9);
    public double DecodeTokensPerSecond => Tokens.Length / Math.Max(DecodeSeconds, 1e-9);
}

/// <summary>Prefills a prompt densely, then decodes token by token through the chosen selector, calling back
/// with each new token as it is produced.</summary>
public sealed class Generator(Transformer model)
{
    public GenerationResult Generate(ReadOnlySpan<int> prompt, GenerationOptions options, Action<int>? onToken = null,
        CancellationToken cancel = default)
    {
        if (prompt.Length == 0) throw new ArgumentException("The prompt is empty.");
        if (options.MaxTokens < 0) throw new ArgumentException($"max tokens must be ≥ 0, got {options.MaxTokens}.");
        int capacity = prompt.Length + Math.Max(1, options.MaxTokens);
        if (prompt.Length > model.Config.MaxPositions)
            throw new ContextOverflowException($"The prompt has {prompt.Length} tokens but the model's context is {model.Config.MaxPositions} tokens.");
        capacity = Math.Min(capacity, model.Config.MaxPositions);
        var sampler = new Sampler(options.Sampling);
        using var cache = model.CreateCache(capacity, options.CacheType);
        var selector = options.Selector?.Invoke(model.Config);
        var ws = new DecodeWorkspace(model, cache, selector?.Granularity ?? SelectionGranularity.QueryHead);

        long t0 = Stopwatch.GetTimestamp();
        ChunkedPrefill.Run(model, prompt, cache, ws.Logits, options.PrefillProgress);
        double promptSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;

        var tokens = new List<int>();
        string reason = "length";
        long t1 = Stopwatch.GetTimestamp();
        while (tokens.Count < options.MaxTokens)
        {
            cancel.ThrowIfCancellationRequested();
            int next = sampler.Next(ws.Logits);
            tokens.Add(next);
            onToken?.Invoke(next);
            if (options.StopTokenIds.Contains(next))
            {
                reason = "stop";
                break;
            }
            if (tokens.Count == options.MaxTokens) break;
            if (cache.Length >= capacity)
            {
                reason = "length";
                break;
            }
            model.Decode(next, cache, ws, selector, options.Observer);
        }
        return new GenerationResult(tokens.ToArray(), reason, prompt.Length, promptSeconds, Stopwatch.GetElapsedTime(t1).TotalSeconds);
    }
}
