using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>A prefill that reports its progress: the same chunks Transformer.Prefill runs (PrefillChunk tokens
/// each, continuing from the cache's length), one call per chunk, so the cache and logits are the same as one call
/// gives, and a caller can show how far a long prompt has got.</summary>
public static class ChunkedPrefill
{
    /// <param name="progress">Called after each chunk with (tokens done, tokens in all); null: one plain call.</param>
    public static void Run(Transformer model, ReadOnlySpan<int> tokens, KvCache cache, Span<float> lastLogits, Action<int, int>? progress)
    {
        if (progress is null)
        {
            model.Prefill(tokens, cache, lastLogits);
            return;
        }
        int chunk = model.PrefillChunk;
        for (int c0 = 0; c0 < tokens.Length; c0 += chunk)
        {
            int n = Math.Min(chunk, tokens.Length - c0);
            model.Prefill(tokens.Slice(c0, n), cache, c0 + n == tokens.Length ? lastLogits : default);
            progress(c0 + n, tokens.Length);
        }
    }
}
