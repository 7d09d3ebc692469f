namespace SparseDecode.Model;

/// <summary>Rotary position embedding in Hugging Face's "rotate half" layout: dimension i pairs with i + d/2.
/// cos/sin per position are computed as transformers computes them (f32 angle = f32 inv_freq × position).
/// The tables cover only the positions used so far, doubling on demand up to MaxPositions: built eagerly they
/// cost 4·head_dim bytes per position of the configured context (1 GB for a 4M-position config) whether or not
/// a sequence ever gets there.</summary>
public sealed class Rope
{
    /// <summary>Positions built at construction; most sequences never need more.</summary>
    public const int InitialPositions = 4096;

    private sealed record Tables(float[] Cos, float[] Sin, int Positions);

    private readonly double[] _inv;
    private readonly int _half;
    private readonly object _growLock = new();
    // Read without a lock by concurrent sequences; replaced whole (never mutated) when it grows.
    private volatile Tables _tables;

    public int MaxPositions { get; }

    public Rope(RopeScaling scaling, int headDim, int maxPositions)
    {
        if (maxPositions < 1) throw new ArgumentOutOfRangeException(nameof(maxPositions), $"RoPE needs at least one position, got {maxPositions}.");
        _half = headDim / 2;
        MaxPositions = maxPositions;
        _inv = scaling.InverseFrequencies(headDim);
        _tables = Build(Math.Min(maxPositions, InitialPositions), null);
    }

    /// <summary>Positions the tables hold now (grows as positions are used).</summary>
    public int BuiltPositions => _tables.Positions;

    /// <summary>cos of angle [position][d/2] for every position up to MaxPositions, as the CPU engine rotates with
    /// (uploaded as is by the GPU model, which sizes MaxPositions to its cache).</summary>
    public ReadOnlySpan<float> CosTable => Ensure(MaxPositions - 1).Cos;
    public ReadOnlySpan<float> SinTable => Ensure(MaxPositions - 1).Sin;

    /// <summary>Rotates each of `heads` consecutive head vectors of v (length heads × headDim) for position pos.</summary>
    public void Apply(Span<float> v, int heads, int pos)
    {
        var t = _tables;
        if ((uint)pos >= (uint)t.Positions) t = Ensure(pos);
        var cos = t.Cos.AsSpan(pos * _half, _half);
        var sin = t.Sin.AsSpan(pos * _half, _half);
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

    private Tables Ensure(int pos)
    {
        if ((uint)pos >= (uint)MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(pos), $"Position {pos} is outside the RoPE range [0, {MaxPositions}).");
        lock (_growLock)
        {
            var t = _tables;
            if (pos < t.Positions) return t;
            long want = Math.Max(pos + 1L, 2L * t.Positions);
            _tables = t = Build((int)Math.Min(want, MaxPositions), t);
            return t;
        }
    }

    /// <summary>Tables for `positions` positions, reusing the rows of `old`.</summary>
    private Tables Build(int positions, Tables? old)
    {
        long size = checked((long)positions * _half);
        if (size > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(positions), $"RoPE tables for {positions} positions exceed the largest array.");
        var cos = new float[size];
        var sin = new float[size];
        int from = 0;
        if (old is not null)
        {
            old.Cos.CopyTo(cos, 0);
            old.Sin.CopyTo(sin, 0);
            from = old.Positions;
        }
        for (int p = from; p < positions; p++)
            for (int i = 0; i < _half; i++)
            {
                float angle = (float)_inv[i] * p;
                cos[(long)p * _half + i] = (float)Math.Cos(angle);
                sin[(long)p * _half + i] = (float)Math.Sin(angle);
            }
        return new Tables(cos, sin, positions);
    }
}
