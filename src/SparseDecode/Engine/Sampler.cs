using System.Numerics.Tensors;

namespace SparseDecode.Engine;

/// <summary>Picks the next token from logits: greedy, or temperature with optional top-k and top-p (nucleus)
/// filtering, drawing from a seeded generator so that a seed reproduces a sample.</summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private float[] _probs = [];
    private int[] _order = [];

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        _random = options.Seed is ulong s ? new Random(unchecked((int)(s ^ (s >> 32)))) : new Random();
    }

    /// <summary>Below this temperature sampling is greedy: exp(−gap / T) underflows to 0 in float for any logit gap
    /// above ~1e-4, so the draw could only differ from the argmax between near-ties, and dividing raw logits by a
    /// subnormal temperature would overflow to infinity (the sampler once returned garbage at T ≈ 1e-40).</summary>
    public const float GreedyBelow = 1e-6f;

    /// <summary>The next token. Throws <see cref="NonFiniteLogitsException"/> when a logit is NaN or +∞ or all are
    /// −∞: the step's arithmetic has gone wrong, and any token picked from it would be meaningless.</summary>
    public int Next(ReadOnlySpan<float> logits)
    {
        float max = TensorPrimitives.Max(logits);
        if (!float.IsFinite(max)) throw new NonFiniteLogitsException(max);
        if (_options.Temperature < GreedyBelow) return TensorPrimitives.IndexOfMax(logits);
        int n = logits.Length;
        if (_probs.Length < n)
        {
            _probs = new float[n];
            _order = new int[n];
        }
        var p = _probs.AsSpan(0, n);
        // Shift by the maximum before dividing, so that (l − max) / T ≤ 0 cannot overflow for any temperature.
        TensorPrimitives.Subtract(logits, max, p);
        TensorPrimitives.Divide(p, _options.Temperature, p);
        Logits.Softmax(p);
        var order = _order.AsSpan(0, n);
        for (int i = 0; i < n; i++) order[i] = i;
        int keep = n;
        if (_options.TopK > 0 || _options.TopP < 1)
        {
            // Sort by probability, descending; ties by id so that a seed reproduces the same draw.
            var probs = _probs;
            order.Sort((a, b) => probs[b] != probs[a] ? probs[b].CompareTo(probs[a]) : a.CompareTo(b));
            if (_options.TopK > 0) keep = Math.Min(keep, _options.TopK);
            if (_options.TopP < 1)
            {
                double cumulative = 0;
                for (int i = 0; i < keep; i++)
                {
                    cumulative += p[order[i]];
                    if (cumulative >= _options.TopP)
                    {
                        keep = i + 1;
                        break;
                    }
                }
            }
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += p[order[i]];
        double r = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            r -= p[order[i]];
            if (r <= 0) return order[i];
        }
        return order[keep - 1];
    }
}
