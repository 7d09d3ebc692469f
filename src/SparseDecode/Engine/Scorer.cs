using SparseDecode.Kernels;
using SparseDecode.Model;

namespace SparseDecode.Engine;

/// <summary>Per-token log-probabilities of a token sequence under dense attention: entry i is
/// log p(token i+1 | tokens 0..i), the form transformers' logits give.</summary>
public static class Scorer
{
    public static double[] TokenLogprobs(Transformer model, ReadOnlySpan<int> tokens, DType cacheType = DType.F32)
    {
        if (tokens.Length < 2) throw new ArgumentException("Scoring needs at least two tokens.");
        using var cache = model.CreateCache(tokens.Length, cacheType);
        int v = model.Config.VocabSize, chunk = model.PrefillChunk;
        var result = new double[tokens.Length - 1];
        var logits = new float[Math.Min(chunk, tokens.Length) * v];
        for (int c0 = 0; c0 < tokens.Length; c0 += chunk)
        {
            int n = Math.Min(chunk, tokens.Length - c0);
            model.Prefill(tokens.Slice(c0, n), cache, default, logits.AsSpan(0, n * v));
            for (int t = 0; t < n && c0 + t + 1 < tokens.Length; t++)
            {
                double lp = Activations.LogSoftmaxAt(logits.AsSpan(t * v, v), tokens[c0 + t + 1]);
                // A NaN here would reach the JSON writer, which refuses it with an exception far from the cause.
                if (!double.IsFinite(lp)) throw new NonFiniteLogitsException((float)lp);
                result[c0 + t] = lp;
            }
        }
        return result;
    }
}
