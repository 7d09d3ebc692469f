using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The rows of a matrix-vector product. bf16 rows are read as 32-bit words, each holding two weights: the
/// even weight becomes an f32 by a shift, the odd one by a mask, with no widening shuffle; x is split beforehand
/// into its even and odd entries (<see cref="Deinterleave"/>, once per product, shared by every row) so the two
/// halves meet their own inputs. Rows are read one after the other, so the matrix is one sequential stream:
/// reading four rows side by side (to reuse each load of x) was measured 2.5× slower on the bundled model, whose
/// 768-byte rows are too short for the hardware prefetcher to follow four interleaved streams.</summary>
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

    /// <summary>y_b[r] (=|+=) W[r]·x_b (+ bias[r]) for r in [r0, r1) and each of the `batch` inputs x_b = x[b],
    /// y_b = y[b] (a decode step's rows, one per sequence). split: the inputs split by <see cref="Deinterleave"/>
    /// when <see cref="UsesSplitInput"/>, input b's even half at split + b·cols and its odd half cols/2 later;
    /// otherwise ignored.
    /// Each weight row is read from memory once for all inputs: the inputs take their turns on it while it is in
    /// L1. Every output is summed exactly as for a lone input (the same accumulators, the same order), so a row
    /// of a batch equals that input's product alone, bit for bit.</summary>
    public static void Rows(DType type, byte* w, int cols, float** x, float* split, int batch, int r0, int r1,
        float** y, float[]? bias, bool accumulate)
    {
        long rowBytes = (long)cols * type.SizeInBytes();
        bool halves = UsesSplitInput(type, cols) && Vector256.IsHardwareAccelerated;
        int words = cols / 2;
        for (int r = r0; r < r1; r++)
        {
            byte* row = w + r * rowBytes;
            int b = 0;
            if (halves)
                for (; b + 2 <= batch; b += 2)
                {
                    float* s0 = split + (long)b * cols, s1 = s0 + cols;
                    Bf16Row2((uint*)row, words, s0, s0 + words, s1, s1 + words, out float dot0, out float dot1);
                    Store(y[b], r, dot0, bias, accumulate);
                    Store(y[b + 1], r, dot1, bias, accumulate);
                }
            for (; b < batch; b++)
            {
                float* s = split + (long)b * cols;
                Store(y[b], r, halves ? Bf16Row((uint*)row, words, s, s + words) : Dot.Row(type, row, x[b], cols), bias, accumulate);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, int r, float dot, float[]? bias, bool accumulate)
    {
        if (bias is not null) dot += bias[r];
        y[r] = accumulate ? y[r] + dot : dot;
    }

    /// <summary>One bf16 row of `words` 32-bit words (2·words weights) against x split in halves; four
    /// accumulators keep four FMAs in flight. <see cref="Bf16Row2"/> repeats its sums exactly.</summary>
    private static float Bf16Row(uint* w, int words, float* even, float* odd)
    {
        var high = Vector256.Create(0xFFFF0000u);
        var s0 = Vector256<float>.Zero; var s1 = Vector256<float>.Zero;
        var s2 = Vector256<float>.Zero; var s3 = Vector256<float>.Zero;
        int j = 0;
        for (; j <= words - 16; j += 16)
        {
            var v0 = Vector256.Load(w + j);
            var v1 = Vector256.Load(w + j + 8);
            s0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(v0, 16).AsSingle(), Vector256.Load(even + j), s0);
            s1 = Vector256.FusedMultiplyAdd((v0 & high).AsSingle(), Vector256.Load(odd + j), s1);
            s2 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(v1, 16).AsSingle(), Vector256.Load(even + j + 8), s2);
            s3 = Vector256.FusedMultiplyAdd((v1 & high).AsSingle(), Vector256.Load(odd + j + 8), s3);
        }
        for (; j <= words - 8; j += 8)
        {
            var v = Vector256.Load(w + j);
            s0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(v, 16).AsSingle(), Vector256.Load(even + j), s0);
            s1 = Vector256.FusedMultiplyAdd((v & high).AsSingle(), Vector256.Load(odd + j), s1);
        }
        float sum = Vector256.Sum((s0 + s1) + (s2 + s3));
        for (; j < words; j++)
            sum += BitConverter.UInt32BitsToSingle(w[j] << 16) * even[j] + BitConverter.UInt32BitsToSingle(w[j] & 0xFFFF0000u) * odd[j];
        return sum;
    }

    /// <summary><see cref="Bf16Row"/> for two inputs at once, each summed in the same accumulators and order as
    /// alone (so bitwise equal to it): each load of the row is widened once for both, halving the loads and shifts
    /// per FMA. Eight accumulators and four widened weights fit in the 16 AVX registers; three inputs would not.</summary>
    private static void Bf16Row2(uint* w, int words, float* even0, float* odd0, float* even1, float* odd1, out float dot0, out float dot1)
    {
        var high = Vector256.Create(0xFFFF0000u);
        var a0 = Vector256<float>.Zero; var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero; var a3 = Vector256<float>.Zero;
        var b0 = Vector256<float>.Zero; var b1 = Vector256<float>.Zero;
        var b2 = Vector256<float>.Zero; var b3 = Vector256<float>.Zero;
        int j = 0;
        for (; j <= words - 16; j += 16)
        {
            var v0 = Vector256.Load(w + j);
            var v1 = Vector256.Load(w + j + 8);
            var e0 = Vector256.ShiftLeft(v0, 16).AsSingle();
            var o0 = (v0 & high).AsSingle();
            var e1 = Vector256.ShiftLeft(v1, 16).AsSingle();
            var o1 = (v1 & high).AsSingle();
            a0 = Vector256.FusedMultiplyAdd(e0, Vector256.Load(even0 + j), a0);
            a1 = Vector256.FusedMultiplyAdd(o0, Vector256.Load(odd0 + j), a1);
            a2 = Vector256.FusedMultiplyAdd(e1, Vector256.Load(even0 + j + 8), a2);
            a3 = Vector256.FusedMultiplyAdd(o1, Vector256.Load(odd0 + j + 8), a3);
            b0 = Vector256.FusedMultiplyAdd(e0, Vector256.Load(even1 + j), b0);
            b1 = Vector256.FusedMultiplyAdd(o0, Vector256.Load(odd1 + j), b1);
            b2 = Vector256.FusedMultiplyAdd(e1, Vector256.Load(even1 + j + 8), b2);
            b3 = Vector256.FusedMultiplyAdd(o1, Vector256.Load(odd1 + j + 8), b3);
        }
        for (; j <= words - 8; j += 8)
        {
            var v = Vector256.Load(w + j);
            var e = Vector256.ShiftLeft(v, 16).AsSingle();
            var o = (v & high).AsSingle();
            a0 = Vector256.FusedMultiplyAdd(e, Vector256.Load(even0 + j), a0);
            a1 = Vector256.FusedMultiplyAdd(o, Vector256.Load(odd0 + j), a1);
            b0 = Vector256.FusedMultiplyAdd(e, Vector256.Load(even1 + j), b0);
            b1 = Vector256.FusedMultiplyAdd(o, Vector256.Load(odd1 + j), b1);
        }
        dot0 = Vector256.Sum((a0 + a1) + (a2 + a3));
        dot1 = Vector256.Sum((b0 + b1) + (b2 + b3));
        for (; j < words; j++)
        {
            float e = BitConverter.UInt32BitsToSingle(w[j] << 16), o = BitConverter.UInt32BitsToSingle(w[j] & 0xFFFF0000u);
            dot0 += e * even0[j] + o * odd0[j];
            dot1 += e * even1[j] + o * odd1[j];
        }
    }
}
