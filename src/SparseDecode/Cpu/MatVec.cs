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

    /// <summary>y[r] (=|+=) W[r]·x (+ bias[r]) for r in [r0, r1). xEven/xOdd: x split by <see cref="Deinterleave"/>
    /// when <see cref="UsesSplitInput"/>, otherwise ignored.</summary>
    public static void Rows(DType type, byte* w, int cols, float* x, float* xEven, float* xOdd, int r0, int r1,
        float* y, float[]? bias, bool accumulate)
    {
        long rowBytes = (long)cols * type.SizeInBytes();
        bool split = UsesSplitInput(type, cols) && Vector256.IsHardwareAccelerated;
        for (int r = r0; r < r1; r++)
        {
            float dot = split ? Bf16Row((uint*)(w + r * rowBytes), cols / 2, xEven, xOdd) : Dot.Row(type, w + r * rowBytes, x, cols);
            if (bias is not null) dot += bias[r];
            y[r] = accumulate ? y[r] + dot : dot;
        }
    }

    /// <summary>One bf16 row of `words` 32-bit words (2·words weights) against x split in halves; four
    /// accumulators keep four FMAs in flight.</summary>
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
}
