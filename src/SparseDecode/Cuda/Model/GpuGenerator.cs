using System.Diagnostics;
using SparseDecode.Engine;
using SparseDecode.Kernels;

namespace SparseDecode.Cuda;

/// <summary>`generate` and `score` on the GPU model: prefill in chunks of rows, decode through a replayed step
/// graph, logits copied back for sampling on the host. With options.Selector the selector runs on the host against the
/// GPU selection backend (each decode step launched kernel by kernel); without one, dense through the step graph.</summary>
public static class GpuGenerator
{
    public static GenerationResult Generate(GpuModel model, ReadOnlySpan<int> prompt, GenerationOptions options, Action<int>? onToken = null)
    {
        if (prompt.Length == 0) throw new ArgumentException("The prompt is empty.");
        if (options.MaxTokens < 0) throw new ArgumentException($"max tokens must be ≥ 0, got {options.MaxTokens}.");
        if (prompt.Length > model.Capacity)
            throw new ContextOverflowException($"The prompt has {prompt.Length} tokens but the model's context is {model.Capacity} tokens.");
        int capacity = Math.Min(prompt.Length + Math.Max(1, options.MaxTokens), model.Capacity);
        var sampler = new Sampler(options.Sampling);
        using var session = new GpuDecodeSession(model, capacity, options.Selector?.Invoke(model.Config));
        long t0 = Stopwatch.GetTimestamp();
        session.Prefill(prompt);
        double promptSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        var tokens = new List<int>();
        string reason = "length";
        long t1 = Stopwatch.GetTimestamp();
        var logits = session.LastLogits;
        while (tokens.Count < options.MaxTokens)
        {
            int next = sampler.Next(logits);
            tokens.Add(next);
            onToken?.Invoke(next);
            if (options.StopTokenIds.Contains(next))
            {
                reason = "stop";
                break;
            }
            if (tokens.Count == options.MaxTokens || session.Length >= session.Capacity) break;
            logits = session.Decode(next);
        }
        return new GenerationResult(tokens.ToArray(), reason, prompt.Length, promptSeconds, Stopwatch.GetElapsedTime(t1).TotalSeconds);
    }

    /// <summary>Entry i: log p(token i+1 | tokens 0..i) under the GPU model (the CPU Scorer's contract).</summary>
    public static double[] TokenLogprobs(GpuModel model, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length < 2) throw new ArgumentException("Scoring needs at least two tokens.");
        using var session = new GpuDecodeSession(model, tokens.Length);
        var result = new double[tokens.Length - 1];
        var ids = tokens.ToArray();
        session.Prefill(tokens, (i, logits) =>
        {
            if (i + 1 < ids.Length) result[i] = Activations.LogSoftmaxAt(logits, ids[i + 1]);
        });
        return result;
    }
}
