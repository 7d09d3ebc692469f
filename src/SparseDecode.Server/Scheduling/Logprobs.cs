using System.Numerics.Tensors;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Serving;

namespace SparseDecode.Server.Scheduling;

/// <summary>Log-probabilities under the model's distribution (the raw logits, before temperature or top-p), as
/// OpenAI reports them.</summary>
internal static class Logprobs
{
    public static TokenLogprob Of(ReadOnlySpan<float> logits, int chosen, int top, float[] scratch, ITextCodec codec)
    {
        float max = TensorPrimitives.Max(logits);
        var shifted = scratch.AsSpan(0, logits.Length);
        TensorPrimitives.Subtract(logits, max, shifted);
        TensorPrimitives.Exp(shifted, shifted);
        double logZ = max + Math.Log(TensorPrimitives.Sum<float>(shifted));
        var alternatives = new List<(int, string, double)>(top);
        if (top > 0)
        {
            // Top-k by repeated selection: k ≤ 20, so k passes over the vocabulary beat sorting it.
            Span<int> picked = stackalloc int[top];
            for (int j = 0; j < top && j < logits.Length; j++)
            {
                int best = -1;
                for (int i = 0; i < logits.Length; i++)
                {
                    if (best >= 0 && logits[i] <= logits[best]) continue;
                    if (picked[..j].Contains(i)) continue;
                    best = i;
                }
                picked[j] = best;
                alternatives.Add((best, codec.TokenText(best), logits[best] - logZ));
            }
        }
        return new TokenLogprob(chosen, codec.TokenText(chosen), logits[chosen] - logZ, alternatives);
    }
}
