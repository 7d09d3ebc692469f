using SparseDecode.Model;

namespace SparseDecode.Kernels;

/// <summary>Rotary position embedding in Hugging Face's "rotate half" layout: dimension i pairs with i + d/2.
/// cos/sin are precomputed per position as transformers computes them (f32 angle = f32 inv_freq × position).</summary>
public sealed class Rope
{
    private readonly float[] _cos;
    private readonly float[] _sin;
    private readonly int _half;

    public int MaxPositions { get; }

    public Rope(RopeScaling scaling, int headDim, int maxPositions)
    {
        _half = headDim / 2;
        MaxPositions = maxPositions;
        double[] inv = scaling.InverseFrequencies(headDim);
        _cos = new float[(long)maxPositions * _half];
        _sin = new float[(long)maxPositions * _half];
        for (int p = 0; p < maxPositions; p++)
            for (int i = 0; i < _half; i++)
            {
                float angle = (float)inv[i] * p;
                _cos[(long)p * _half + i] = (float)Math.Cos(angle);
                _sin[(long)p * _half + i] = (float)Math.Sin(angle);
            }
    }

    /// <summary>cos of angle [position][d/2], as the CPU engine rotates with (uploaded as is by the GPU model).</summary>
    public ReadOnlySpan<float> CosTable => _cos;
    public ReadOnlySpan<float> SinTable => _sin;

    /// <summary>Rotates each of `heads` consecutive head vectors of v (length heads × headDim) for position pos.</summary>
    public void Apply(Span<float> v, int heads, int pos)
    {
        var cos = _cos.AsSpan(pos * _half, _half);
        var sin = _sin.AsSpan(pos * _half, _half);
        int d = 2 * _half;
        for (int h = 0; h < heads; h++)
        {
            var x = v.Slice(h * d, d);
            for (int i = 0; i < _half; i++)
            {
                float a = x[i], b = x[i + _half];
                x[i] = a * cos[i] - b * sin[i];
                x[i + _half] = b * cos[i] + a * sin[i];
            }
        }
    }
}
