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

    /// <summary>Whether <see cref="Next"/> picks the most likely token (temperature below <see cref="GreedyBelow"/>).</summary>
    public bool IsGreedy => _options.Temperature < GreedyBelow;

    /// <summary>The next token. Throws <see cref="NonFiniteLogitsException"/> when a logit is NaN or +∞ or all are
    /// −∞: the step's arithmetic has gone wrong, and any token picked from it would be meaningless.</summary>
    public int Next(ReadOnlySpan<float> logits)
    {
        if (Filter(logits, out int keep, out double total) is int greedy) return greedy;
        var p = _probs.AsSpan(0, logits.Length);
        double r = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            r -= p[_order[i]];
            if (r <= 0) return _order[i];
        }
        return _order[keep - 1];
    }

    /// <summary>The distribution <see cref="Next"/> draws from, over the whole vocabulary: after temperature, top-k
    /// and top-p, normalised, 0 outside the kept tokens (greedy: 1 at the most likely token). What speculative
    /// sampling compares a draft's distribution with.</summary>
    public void Distribution(ReadOnlySpan<float> logits, Span<float> probs)
    {
        if (probs.Length != logits.Length) throw new ArgumentException($"{logits.Length} logits but {probs.Length} probabilities.", nameof(probs));
        probs.Clear();
        if (Filter(logits, out int keep, out double total) is int greedy)
        {
            probs[greedy] = 1;
            return;
        }
        for (int i = 0; i < keep; i++) probs[_order[i]] = (float)(_probs[_order[i]] / total);
    }

    /// <summary>A token drawn from `weights` (≥ 0, not all 0; need not sum to 1) with this sampler's generator.</summary>
    public int Draw(ReadOnlySpan<float> weights)
    {
        double total = 0;
        int last = -1;
        for (int i = 0; i < weights.Length; i++)
            if (weights[i] > 0)
            {
                total += weights[i];
                last = i;
            }
        if (last < 0) throw new ArgumentException("No token has a weight above 0.", nameof(weights));
        double r = _random.NextDouble() * total;
        for (int i = 0; i < last; i++)
        {
            r -= weights[i];
            if (weights[i] > 0 && r <= 0) return i;
        }
        return last;
    }

    /// <summary>A uniform number in [0, 1) from this sampler's generator.</summary>
    public double Uniform() => _random.NextDouble();

    /// <summary>Temperature, top-k and top-p over the logits: the most likely token when greedy (returned), else
    /// _probs[0, n) the tempered probabilities, _order[0, keep) the kept tokens in draw order and `total` their
    /// mass.</summary>
    private int? Filter(ReadOnlySpan<float> logits, out int keep, out double total)
    {
        float max = TensorPrimitives.Max(logits);
        if (!float.IsFinite(max)) throw new NonFiniteLogitsException(max);
        (keep, total) = (0, 0);
        if (IsGreedy) return TensorPrimitives.IndexOfMax(logits);
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
        keep = n;
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
        for (int i = 0; i < keep; i++) total += p[order[i]];
        return null;
    }
}
