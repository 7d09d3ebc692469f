using System.Numerics.Tensors;

namespace SparseDecode.Engine;

/// <summary>Picks the next token from logits: greedy, or temperature with optional top-k and top-p (nucleus)
/// filtering, drawing from a seeded generator so that a seed reproduces a sample.</summary>
/// <remarks>A draw is defined so that a device can make it without sorting: the kept tokens are the `keep` most likely
/// (ties broken by lower id), and one uniform number u from the generator picks the first kept token, in id order,
/// at which the kept probabilities summed so far reach u times their total. A backend that samples on the device
/// (<see cref="IInferenceEngine.DecodeAndSample"/>) takes u from <see cref="Uniform"/> and draws this same token, unless
/// u falls within rounding of the boundary between two tokens' shares.</remarks>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;
    private float[] _probs = [];
    private int[] _order = [];
    // with penalties: how often each token has been drawn; with penalties or a bias, the logits adjusted
    private readonly Dictionary<int, int>? _drawn;
    private float[] _adjusted = [];

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        _random = options.Seed is ulong s ? new Random(unchecked((int)(s ^ (s >> 32)))) : new Random();
        if (options.HasPenalties) _drawn = [];
    }

    /// <summary>The settings this sampler draws with.</summary>
    public SamplingOptions Options => _options;

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
        logits = Adjusted(logits);
        int next = Filter(logits, out int keep, out double total) is int greedy ? greedy : Pick(logits.Length, keep, total, _random.NextDouble());
        if (_drawn is not null) _drawn[next] = _drawn.GetValueOrDefault(next) + 1;
        return next;
    }

    /// <summary>The logits with the bias added and the penalties of the tokens drawn so far subtracted (the logits
    /// themselves when there is neither). A bias or count of a token past the vocabulary is ignored.</summary>
    private ReadOnlySpan<float> Adjusted(ReadOnlySpan<float> logits)
    {
        var bias = _options.LogitBias;
        if ((_drawn is null || _drawn.Count == 0) && bias is not { Count: > 0 }) return logits;
        if (_adjusted.Length < logits.Length) _adjusted = new float[logits.Length];
        var p = _adjusted.AsSpan(0, logits.Length);
        logits.CopyTo(p);
        if (bias is not null)
            foreach (var (token, b) in bias)
                if ((uint)token < (uint)p.Length) p[token] += b;
        if (_drawn is not null)
            foreach (var (token, count) in _drawn)
                if ((uint)token < (uint)p.Length) p[token] -= _options.FrequencyPenalty * count + _options.PresencePenalty;
        return p;
    }

    /// <summary>The token <see cref="Next"/> picks from `logits` when the generator's number is `uniform` (in [0, 1)),
    /// without drawing one: what a draw made elsewhere with the same number must equal.</summary>
    public int Choose(ReadOnlySpan<float> logits, double uniform)
    {
        if (!(uniform >= 0 && uniform < 1)) throw new ArgumentOutOfRangeException(nameof(uniform), $"A uniform number lies in [0, 1), got {uniform}.");
        logits = Adjusted(logits);
        if (Filter(logits, out int keep, out double total) is int greedy) return greedy;
        return Pick(logits.Length, keep, total, uniform);
    }

    /// <summary>The first kept token in id order at which the kept probabilities summed so far reach u·total (the
    /// last kept one should rounding leave the sum short).</summary>
    private int Pick(int n, int keep, double total, double u)
    {
        var p = _probs.AsSpan(0, n);
        var order = _order.AsSpan(0, keep);
        double r = u * total;
        for (int i = 0; i < keep; i++)
        {
            r -= p[order[i]];
            if (r <= 0) return order[i];
        }
        return order[keep - 1];
    }

    /// <summary>The distribution <see cref="Next"/> draws from, over the whole vocabulary: after temperature, top-k
    /// and top-p, normalised, 0 outside the kept tokens (greedy: 1 at the most likely token). What speculative
    /// sampling compares a draft's distribution with.</summary>
    public void Distribution(ReadOnlySpan<float> logits, Span<float> probs)
    {
        if (probs.Length != logits.Length) throw new ArgumentException($"{logits.Length} logits but {probs.Length} probabilities.", nameof(probs));
        probs.Clear();
        logits = Adjusted(logits);
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
    /// _probs[0, n) the tempered probabilities, _order[0, keep) the kept tokens in id order and `total` their
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
        int k = _options.TopK > 0 && _options.TopK < n ? _options.TopK : n;
        if (k == n && _options.TopP >= 1 || !Cut(p, k, out float tau, out int ties))
        {
            for (int i = 0; i < n; i++) order[i] = i;
            keep = n;
        }
        else
        {
            // the kept tokens in id order, the order a draw walks them: those above the cut, and of those at it the
            // lowest ids
            keep = 0;
            for (int i = 0; i < n; i++)
                if (p[i] > tau || p[i] == tau && ties-- > 0) order[keep++] = i;
        }
        for (int i = 0; i < keep; i++) total += p[order[i]];
        return null;
    }

    /// <summary>Where top-k's count `k` or top-p's mass cuts the probabilities, found without sorting (what the GPU's
    /// draw does too, sampling.cu): radix selection over the bits of the probabilities (non-negative floats order as
    /// their bit patterns), four passes of 8 bits, each a histogram of count and mass over the tokens still in range.
    /// `tau` is the smallest probability kept and `ties` how many tokens equal to it are kept (the lowest ids); false
    /// when rounding leaves the whole mass short of top-p and every token is kept.</summary>
    private bool Cut(ReadOnlySpan<float> p, int k, out float tau, out int ties)
    {
        double target = _options.TopP < 1 ? _options.TopP : double.PositiveInfinity;
        Span<int> count = stackalloc int[256];
        Span<double> mass = stackalloc double[256];
        uint prefix = 0, mask = 0;
        int above = 0, tieCount = 0;
        double massAbove = 0;
        for (int shift = 24; shift >= 0; shift -= 8)
        {
            count.Clear();
            mass.Clear();
            foreach (float x in p)
            {
                uint bits = BitConverter.SingleToUInt32Bits(x);
                if ((bits & mask) != prefix) continue;
                int b = (int)(bits >> shift) & 255;
                count[b]++;
                mass[b] += x;
            }
            int found = -1;
            for (int b = 255; b >= 0; b--)
            {
                if (count[b] == 0) continue;
                if (above + count[b] >= k || massAbove + mass[b] >= target)
                {
                    found = b;
                    break;
                }
                above += count[b];
                massAbove += mass[b];
            }
            if (found < 0)
            {
                (tau, ties) = (0, 0);
                return false;
            }
            prefix |= (uint)found << shift;
            mask |= 255u << shift;
            tieCount = count[found];
        }
        tau = BitConverter.UInt32BitsToSingle(prefix);
        ties = Math.Min(tieCount, k - above);
        if (_options.TopP < 1 && tau > 0)
        {
            // the tokens at the cut, lowest ids first, until top-p's mass is reached
            double m = massAbove;
            int j = 0;
            while (j < ties)
            {
                m += tau;
                j++;
                if (m >= target) break;
            }
            ties = j;
        }
        ties = Math.Max(ties, 1);
        return true;
    }
}
