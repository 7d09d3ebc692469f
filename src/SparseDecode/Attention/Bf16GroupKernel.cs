using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SparseDecode.Attention;

/// <summary>The inner loops of <see cref="GroupAttention"/> for a bf16 cache on AVX2 + FMA: a group's scores over a
/// block of key rows and its weighted sum of value rows, each row widened to f32 in registers.
///
/// Why it looks like this. Sixteen bf16 entries load as eight 32-bit lanes, lane t holding entry 2t in its low half
/// and entry 2t + 1 in its high half: a shift gives the even entries as f32, a mask the odd ones, two instructions
/// for 16 values. So queries and outputs are kept "split": per 16 entries, the 8 even ones, then the 8 odd ones.
/// Scores take 8 keys at once, 8 accumulators that are summed across lanes together (one transposing reduction
/// for 8 scores instead of a horizontal sum per score). Weighted values keep up to 4 queries' outputs for one
/// 16-entry slice in registers over the whole block of rows, so an output is loaded and stored once per block, not
/// once per key; every output element still adds the keys one at a time in order, as a scalar loop would.</summary>
internal static unsafe class Bf16GroupKernel
{
    /// <summary>Whether this machine runs the kernel for rows of `d` entries.</summary>
    public static bool Supports(int d) => Avx2.IsSupported && Fma.IsSupported && d % 16 == 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Even(Vector256<uint> v) => Vector256.ShiftLeft(v, 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Odd(Vector256<uint> v) => (v & Vector256.Create(0xFFFF0000u)).AsSingle();

    /// <summary>dst = src (d floats) in the split order.</summary>
    public static void Split(float* src, float* dst, int d)
    {
        for (int c = 0; c < d; c += 16)
            for (int t = 0; t < 8; t++)
            {
                dst[c + t] = src[c + 2 * t];
                dst[c + 8 + t] = src[c + 2 * t + 1];
            }
    }

    /// <summary>Puts d floats in the split order back into the natural one, in place.</summary>
    public static void Merge(float* buffer, int d)
    {
        for (int c = 0; c < d; c += 16)
        {
            var even = Vector256.Load(buffer + c);
            var odd = Vector256.Load(buffer + c + 8);
            // per 128-bit half: (e0 o0 e1 o1 | e4 o4 e5 o5) and (e2 o2 e3 o3 | e6 o6 e7 o7)
            var low = Avx.UnpackLow(even, odd);
            var high = Avx.UnpackHigh(even, odd);
            Avx.Permute2x128(low, high, 0x20).Store(buffer + c);
            Avx.Permute2x128(low, high, 0x31).Store(buffer + c + 8);
        }
    }

    /// <summary>scores[j] = scale · q·K[j] for the `count` rows rows[0..count), q split.</summary>
    public static void Scores(byte** rows, int count, float* q, int d, float scale, float* scores)
    {
        int j = 0;
        for (; j + 8 <= count; j += 8) (Score8(rows + j, q, d) * scale).Store(scores + j);
        if (j == count) return;
        // the last 1-7 rows: the 8-row kernel over the last row repeated, keeping only the real scores
        byte** tail = stackalloc byte*[8];
        for (int t = 0; t < 8; t++) tail[t] = rows[Math.Min(j + t, count - 1)];
        float* s = stackalloc float[8];
        (Score8(tail, q, d) * scale).Store(s);
        for (int t = 0; j + t < count; t++) scores[j + t] = s[t];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> Score8(byte** rows, float* q, int d)
    {
        uint* r0 = (uint*)rows[0], r1 = (uint*)rows[1], r2 = (uint*)rows[2], r3 = (uint*)rows[3];
        uint* r4 = (uint*)rows[4], r5 = (uint*)rows[5], r6 = (uint*)rows[6], r7 = (uint*)rows[7];
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int c = 0; c < d; c += 16)
        {
            var qe = Vector256.Load(q + c);
            var qo = Vector256.Load(q + c + 8);
            int w = c / 2; // 16 bf16 entries = 8 lanes of 32 bits
            var v = Vector256.Load(r0 + w); a0 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a0));
            v = Vector256.Load(r1 + w); a1 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a1));
            v = Vector256.Load(r2 + w); a2 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a2));
            v = Vector256.Load(r3 + w); a3 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a3));
            v = Vector256.Load(r4 + w); a4 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a4));
            v = Vector256.Load(r5 + w); a5 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a5));
            v = Vector256.Load(r6 + w); a6 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a6));
            v = Vector256.Load(r7 + w); a7 = Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a7));
        }
        // lanes of (a0 a1 a2 a3) summed by pairs twice: (Σa0 Σa1 Σa2 Σa3) split over the two 128-bit halves
        var h0 = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        var h1 = Avx.HorizontalAdd(Avx.HorizontalAdd(a4, a5), Avx.HorizontalAdd(a6, a7));
        return Avx.Permute2x128(h0, h1, 0x20) + Avx.Permute2x128(h0, h1, 0x31);
    }

    /// <summary>For `group` queries (any number): output_i += Σ_j w_i[j] · V[j] over rows[0..count), with w_i at
    /// weights + i·stride and output_i (split order) at output + i·d.</summary>
    public static void AddWeightedValues(byte** rows, int count, float* weights, long stride, float* output, int d, int group)
    {
        int i = 0;
        for (; i + 4 <= group; i += 4) AddWeighted<Four>(rows, count, weights + i * stride, stride, output + (long)i * d, d);
        switch (group - i)
        {
            case 3: AddWeighted<Three>(rows, count, weights + i * stride, stride, output + (long)i * d, d); break;
            case 2: AddWeighted<Two>(rows, count, weights + i * stride, stride, output + (long)i * d, d); break;
            case 1: AddWeighted<One>(rows, count, weights + i * stride, stride, output + (long)i * d, d); break;
        }
    }

    private interface IQueries { static abstract int Count { get; } }
    private struct One : IQueries { public static int Count => 1; }
    private struct Two : IQueries { public static int Count => 2; }
    private struct Three : IQueries { public static int Count => 3; }
    private struct Four : IQueries { public static int Count => 4; }

    /// <summary>TQueries.Count (1-4) queries' outputs for one 16-entry slice at a time, in registers over all rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddWeighted<TQueries>(byte** rows, int count, float* w, long stride, float* output, int d)
        where TQueries : struct, IQueries
    {
        int g = TQueries.Count;
        float* w0 = w, w1 = w + stride, w2 = w + 2 * stride, w3 = w + 3 * stride;
        float* o0 = output, o1 = output + d, o2 = output + 2 * d, o3 = output + 3 * d;
        for (int c = 0; c < d; c += 16)
        {
            int lane = c / 2;
            Vector256<float> e0 = Vector256.Load(o0 + c), d0 = Vector256.Load(o0 + c + 8);
            Vector256<float> e1 = default, d1 = default, e2 = default, d2 = default, e3 = default, d3 = default;
            if (g > 1) { e1 = Vector256.Load(o1 + c); d1 = Vector256.Load(o1 + c + 8); }
            if (g > 2) { e2 = Vector256.Load(o2 + c); d2 = Vector256.Load(o2 + c + 8); }
            if (g > 3) { e3 = Vector256.Load(o3 + c); d3 = Vector256.Load(o3 + c + 8); }
            for (int j = 0; j < count; j++)
            {
                var v = Vector256.Load((uint*)rows[j] + lane);
                var even = Even(v);
                var odd = Odd(v);
                var x = Vector256.Create(w0[j]);
                e0 = Fma.MultiplyAdd(even, x, e0); d0 = Fma.MultiplyAdd(odd, x, d0);
                if (g > 1) { x = Vector256.Create(w1[j]); e1 = Fma.MultiplyAdd(even, x, e1); d1 = Fma.MultiplyAdd(odd, x, d1); }
                if (g > 2) { x = Vector256.Create(w2[j]); e2 = Fma.MultiplyAdd(even, x, e2); d2 = Fma.MultiplyAdd(odd, x, d2); }
                if (g > 3) { x = Vector256.Create(w3[j]); e3 = Fma.MultiplyAdd(even, x, e3); d3 = Fma.MultiplyAdd(odd, x, d3); }
            }
            e0.Store(o0 + c); d0.Store(o0 + c + 8);
            if (g > 1) { e1.Store(o1 + c); d1.Store(o1 + c + 8); }
            if (g > 2) { e2.Store(o2 + c); d2.Store(o2 + c + 8); }
            if (g > 3) { e3.Store(o3 + c); d3.Store(o3 + c + 8); }
        }
    }
}
