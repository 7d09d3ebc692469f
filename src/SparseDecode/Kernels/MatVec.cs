using System.Runtime.Intrinsics;
using SparseDecode.Model;

namespace SparseDecode.Kernels;

/// <summary>The rows of a matrix-vector product, four rows at a time so that each load of x feeds four FMAs.
/// bf16 rows are read as 32-bit words, each holding two weights: the even weight becomes an f32 by a shift, the
/// odd one by a mask, with no widening shuffle; x is split beforehand into its even and odd entries
/// (<see cref="Deinterleave"/>, once per product, shared by every row) so the two halves meet their own inputs.</summary>
public static unsafe class MatVec
{
    /// <summary>Splits x (n floats) into even[j] = x[2j] and odd[j] = x[2j+1] (n/2 each; a last odd entry is left out).</summary>
    public static void Deinterleave(float* x, int n, float* even, float* odd)
    {
        for (int j = 0; j < n / 2; j++)
        {
            even[j] = x[2 * j];
            odd[j] = x[2 * j + 1];
        }
    }

    /// <summary>Whether <see cref="Rows"/> needs the split x: bf16 rows of an even length.</summary>
    public static bool UsesSplitInput(DType type, int cols) => type == DType.BF16 && cols % 2 == 0;

    /// <summary>y[r] (=|+=) W[r]·x (+ bias[r]) for r in [r0, r1). xEven/xOdd: x split by <see cref="Deinterleave"/>
    /// when <see cref="UsesSplitInput"/>, otherwise ignored.</summary>
    public static void Rows(DType type, byte* w, int cols, float* x, float* xEven, float* xOdd, int r0, int r1,
        float* y, float[]? bias, bool accumulate)
    {
        long rowBytes = (long)cols * type.SizeInBytes();
        int r = r0;
        if (UsesSplitInput(type, cols) && Vector256.IsHardwareAccelerated)
            for (; r + 4 <= r1; r += 4)
            {
                Bf16Rows4((uint*)(w + r * rowBytes), cols / 2, xEven, xOdd, out float a, out float b, out float c, out float d);
                Store(y, r, a, bias, accumulate);
                Store(y, r + 1, b, bias, accumulate);
                Store(y, r + 2, c, bias, accumulate);
                Store(y, r + 3, d, bias, accumulate);
            }
        for (; r < r1; r++) Store(y, r, Dot.Row(type, w + r * rowBytes, x, cols), bias, accumulate);
    }

    private static void Store(float* y, int r, float dot, float[]? bias, bool accumulate)
    {
        if (bias is not null) dot += bias[r];
        y[r] = accumulate ? y[r] + dot : dot;
    }

    /// <summary>Four consecutive bf16 rows of `words` 32-bit words each (2·words weights) against x split in halves.</summary>
    private static void Bf16Rows4(uint* w, int words, float* even, float* odd, out float a, out float b, out float c, out float d)
    {
        var high = Vector256.Create(0xFFFF0000u);
        var s0 = Vector256<float>.Zero; var s1 = Vector256<float>.Zero;
        var s2 = Vector256<float>.Zero; var s3 = Vector256<float>.Zero;
        uint* w1 = w + words, w2 = w1 + words, w3 = w2 + words;
        int j = 0;
        for (; j <= words - 8; j += 8)
        {
            var xe = Vector256.Load(even + j);
            var xo = Vector256.Load(odd + j);
            var v0 = Vector256.Load(w + j);
            var v1 = Vector256.Load(w1 + j);
            var v2 = Vector256.Load(w2 + j);
            var v3 = Vector256.Load(w3 + j);
            s0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(v0, 16).AsSingle(), xe, s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(v1, 16).AsSingle(), xe, s1);
            s2 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(v2, 16).AsSingle(), xe, s2);
            s3 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(v3, 16).AsSingle(), xe, s3);
            s0 = Vector256.FusedMultiplyAdd((v0 & high).AsSingle(), xo, s0);
            s1 = Vector256.FusedMultiplyAdd((v1 & high).AsSingle(), xo, s1);
            s2 = Vector256.FusedMultiplyAdd((v2 & high).AsSingle(), xo, s2);
            s3 = Vector256.FusedMultiplyAdd((v3 & high).AsSingle(), xo, s3);
        }
        a = Vector256.Sum(s0); b = Vector256.Sum(s1); c = Vector256.Sum(s2); d = Vector256.Sum(s3);
        for (; j < words; j++)
        {
            a += Pair(w[j], even[j], odd[j]);
            b += Pair(w1[j], even[j], odd[j]);
            c += Pair(w2[j], even[j], odd[j]);
            d += Pair(w3[j], even[j], odd[j]);
        }
    }

    private static float Pair(uint word, float even, float odd) =>
        BitConverter.UInt32BitsToSingle(word << 16) * even + BitConverter.UInt32BitsToSingle(word & 0xFFFF0000u) * odd;
}
