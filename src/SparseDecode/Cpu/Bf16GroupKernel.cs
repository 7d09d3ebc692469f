using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SparseDecode.Engine;
using SparseDecode.Model;
using static SparseDecode.Cpu.QueryGroups;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The inner loops of <see cref="GroupAttention"/> for a bf16 cache on AVX2 + FMA: a group's scores over a
/// block of key rows and its weighted sum of value rows, each row widened to f32 in registers.
///
/// Why it looks like this. Sixteen bf16 entries load as eight 32-bit lanes, lane t holding entry 2t in its low half
/// and entry 2t + 1 in its high half: a shift gives the even entries as f32, a mask the odd ones, two instructions
/// for 16 values. So queries and outputs are kept "split": per 16 entries, the 8 even ones, then the 8 odd ones.
/// Scores take a tile of keys × queries (16 keys × 1, 8 × 2 or 4 × 4): each key slice is widened once for all the
/// group's queries, and 16 accumulators are enough independent FMA chains to keep both FMA units busy; they are
/// summed across lanes 8 at a time (one transposing reduction instead of a horizontal sum per score). Weighted
/// values keep up to 4 queries' outputs for two 16-entry slices in registers over the whole block of rows, so an
/// output is loaded and stored once per block, not once per key, and one widened value slice serves every query;
/// every output element still adds the keys one at a time in order, as a scalar loop would.</summary>
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

    /// <summary>For `group` queries (any number), split, at q + i·d: scores[i·stride + j] = scale · q_i·K[j] for the
    /// `count` rows rows[0..count). Up to 4 queries are taken together, so a row is widened once for all of them.</summary>
    public static void Scores(byte** rows, int count, float* q, int group, int d, float scale, float* scores, long stride)
    {
        int i = 0;
        for (; i + 4 <= group; i += 4) ScoresOf<Four>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride);
        switch (group - i)
        {
            case 3:
                ScoresOf<Two>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride);
                ScoresOf<One>(rows, count, q + (long)(i + 2) * d, d, scale, scores + (i + 2) * stride, stride);
                break;
            case 2: ScoresOf<Two>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride); break;
            case 1: ScoresOf<One>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride); break;
        }
    }

    /// <summary>TQueries.Count (1, 2 or 4) queries against 16 / Count rows at a time: 16 (row, query) accumulators,
    /// enough independent chains to keep both FMA units busy; a last partial tile repeats the last row and keeps
    /// only real scores.</summary>
    private static void ScoresOf<TQueries>(byte** rows, int count, float* q, int d, float scale, float* scores, long stride)
        where TQueries : struct, IQueries
    {
        int g = TQueries.Count, tile = 16 / g;
        byte** r = stackalloc byte*[16];
        float* s = stackalloc float[16];
        for (int j = 0; j < count; j += tile)
        {
            for (int t = 0; t < tile; t++) r[t] = rows[Math.Min(j + t, count - 1)];
            // s[t·g + i] = score of row j + t against query i
            Tile<TQueries>(r, q, d, scale, s);
            for (int t = 0; t < tile && j + t < count; t++)
                for (int i = 0; i < g; i++) scores[i * stride + j + t] = s[t * g + i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Dot(Vector256<float> even, Vector256<float> odd, float* q, Vector256<float> a) =>
        Fma.MultiplyAdd(odd, Vector256.Load(q + 8), Fma.MultiplyAdd(even, Vector256.Load(q), a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Dot(uint* row, Vector256<float> qe, Vector256<float> qo, Vector256<float> a)
    {
        var v = Vector256.Load(row);
        return Fma.MultiplyAdd(Odd(v), qo, Fma.MultiplyAdd(Even(v), qe, a));
    }

    /// <summary>One 16-entry slice (32-bit lane w on) of a row, widened once, into two queries' accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row(byte* row, int w, float* q0, float* q1, ref Vector256<float> a0, ref Vector256<float> a1)
    {
        var v = Vector256.Load((uint*)row + w);
        var even = Even(v);
        var odd = Odd(v);
        a0 = Dot(even, odd, q0, a0);
        a1 = Dot(even, odd, q1, a1);
    }

    /// <summary>The same into four queries' accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row(byte* row, int w, float* q0, float* q1, float* q2, float* q3,
        ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3)
    {
        var v = Vector256.Load((uint*)row + w);
        var even = Even(v);
        var odd = Odd(v);
        a0 = Dot(even, odd, q0, a0);
        a1 = Dot(even, odd, q1, a1);
        a2 = Dot(even, odd, q2, a2);
        a3 = Dot(even, odd, q3, a3);
    }

    /// <summary>(a0 .. a7) summed across lanes: lane k holds Σ a_k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Sum8(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3,
        Vector256<float> a4, Vector256<float> a5, Vector256<float> a6, Vector256<float> a7)
    {
        // lanes of (a0 a1 a2 a3) summed by pairs twice: (Σa0 Σa1 Σa2 Σa3) split over the two 128-bit halves
        var h0 = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        var h1 = Avx.HorizontalAdd(Avx.HorizontalAdd(a4, a5), Avx.HorizontalAdd(a6, a7));
        return Avx.Permute2x128(h0, h1, 0x20) + Avx.Permute2x128(h0, h1, 0x31);
    }

    /// <summary>s[t·Count + i] = scale · row t · query i for the 16 / TQueries.Count rows. Each accumulator adds its
    /// row's 16-entry slices in order, whatever the tile's shape, so a score does not depend on its neighbours.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<TQueries>(byte** rows, float* q, int d, float scale, float* s) where TQueries : struct, IQueries
    {
        int g = TQueries.Count;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        Vector256<float> a8 = default, a9 = default, a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        for (int c = 0; c < d; c += 16)
        {
            int w = c / 2; // 16 bf16 entries = 8 lanes of 32 bits
            if (g == 1)
            {
                var qe = Vector256.Load(q + c);
                var qo = Vector256.Load(q + c + 8);
                a0 = Dot((uint*)rows[0] + w, qe, qo, a0); a1 = Dot((uint*)rows[1] + w, qe, qo, a1);
                a2 = Dot((uint*)rows[2] + w, qe, qo, a2); a3 = Dot((uint*)rows[3] + w, qe, qo, a3);
                a4 = Dot((uint*)rows[4] + w, qe, qo, a4); a5 = Dot((uint*)rows[5] + w, qe, qo, a5);
                a6 = Dot((uint*)rows[6] + w, qe, qo, a6); a7 = Dot((uint*)rows[7] + w, qe, qo, a7);
                a8 = Dot((uint*)rows[8] + w, qe, qo, a8); a9 = Dot((uint*)rows[9] + w, qe, qo, a9);
                a10 = Dot((uint*)rows[10] + w, qe, qo, a10); a11 = Dot((uint*)rows[11] + w, qe, qo, a11);
                a12 = Dot((uint*)rows[12] + w, qe, qo, a12); a13 = Dot((uint*)rows[13] + w, qe, qo, a13);
                a14 = Dot((uint*)rows[14] + w, qe, qo, a14); a15 = Dot((uint*)rows[15] + w, qe, qo, a15);
            }
            else if (g == 2)
            {
                float* q0 = q + c, q1 = q + d + c;
                Row(rows[0], w, q0, q1, ref a0, ref a1); Row(rows[1], w, q0, q1, ref a2, ref a3);
                Row(rows[2], w, q0, q1, ref a4, ref a5); Row(rows[3], w, q0, q1, ref a6, ref a7);
                Row(rows[4], w, q0, q1, ref a8, ref a9); Row(rows[5], w, q0, q1, ref a10, ref a11);
                Row(rows[6], w, q0, q1, ref a12, ref a13); Row(rows[7], w, q0, q1, ref a14, ref a15);
            }
            else
            {
                // the queries' slices are FMA memory operands from L1: the accumulators take the registers
                float* q0 = q + c, q1 = q + d + c, q2 = q + 2 * d + c, q3 = q + 3 * d + c;
                Row(rows[0], w, q0, q1, q2, q3, ref a0, ref a1, ref a2, ref a3);
                Row(rows[1], w, q0, q1, q2, q3, ref a4, ref a5, ref a6, ref a7);
                Row(rows[2], w, q0, q1, q2, q3, ref a8, ref a9, ref a10, ref a11);
                Row(rows[3], w, q0, q1, q2, q3, ref a12, ref a13, ref a14, ref a15);
            }
        }
        (Sum8(a0, a1, a2, a3, a4, a5, a6, a7) * scale).Store(s);
        (Sum8(a8, a9, a10, a11, a12, a13, a14, a15) * scale).Store(s + 8);
    }

    /// <summary>The weighted sum of value rows (outputs in the split order), for <see cref="QueryGroups.AddWeightedValues"/>.</summary>
    internal struct Values : IWeightedValues
    {
        /// <summary>TQueries.Count (1-4) queries' outputs for two 16-entry slices at a time (one where d leaves a single
        /// one), in registers over all rows: 16 accumulators, enough independent chains for both FMA units, and each
        /// row's weights broadcast once for both slices.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Add<TQueries>(byte** rows, int count, float* w, long stride, float* output, int d)
            where TQueries : struct, IQueries
        {
            int c = 0;
            for (; c + 32 <= d; c += 32)
            {
                var first = Outputs<TQueries>.Load(output, d, c);
                var second = Outputs<TQueries>.Load(output, d, c + 16);
                for (int j = 0; j < count; j++)
                {
                    Weights<TQueries>(w, stride, j, out var x0, out var x1, out var x2, out var x3);
                    first.Add(Vector256.Load((uint*)rows[j] + c / 2), x0, x1, x2, x3);
                    second.Add(Vector256.Load((uint*)rows[j] + c / 2 + 8), x0, x1, x2, x3);
                }
                first.Store(output, d, c);
                second.Store(output, d, c + 16);
            }
            if (c == d) return;
            var last = Outputs<TQueries>.Load(output, d, c);
            for (int j = 0; j < count; j++)
            {
                Weights<TQueries>(w, stride, j, out var x0, out var x1, out var x2, out var x3);
                last.Add(Vector256.Load((uint*)rows[j] + c / 2), x0, x1, x2, x3);
            }
            last.Store(output, d, c);
        }
    }

    /// <summary>x_i = the weight of row j for query i (w_i at w + i·stride), in every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Weights<TQueries>(float* w, long stride, int j,
        out Vector256<float> x0, out Vector256<float> x1, out Vector256<float> x2, out Vector256<float> x3) where TQueries : struct, IQueries
    {
        int g = TQueries.Count;
        x0 = Vector256.Create(w[j]);
        x1 = g > 1 ? Vector256.Create(w[stride + j]) : default;
        x2 = g > 2 ? Vector256.Create(w[2 * stride + j]) : default;
        x3 = g > 3 ? Vector256.Create(w[3 * stride + j]) : default;
    }

    /// <summary>One 16-entry slice of TQueries.Count queries' outputs (split order) held in registers: the even and
    /// odd halves of each.</summary>
    private struct Outputs<TQueries> where TQueries : struct, IQueries
    {
        private Vector256<float> _e0, _o0, _e1, _o1, _e2, _o2, _e3, _o3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Outputs<TQueries> Load(float* output, int d, int c)
        {
            int g = TQueries.Count;
            Outputs<TQueries> r = default;
            float* o = output + c;
            r._e0 = Vector256.Load(o); r._o0 = Vector256.Load(o + 8);
            if (g > 1) { r._e1 = Vector256.Load(o + d); r._o1 = Vector256.Load(o + d + 8); }
            if (g > 2) { r._e2 = Vector256.Load(o + 2 * d); r._o2 = Vector256.Load(o + 2 * d + 8); }
            if (g > 3) { r._e3 = Vector256.Load(o + 3 * d); r._o3 = Vector256.Load(o + 3 * d + 8); }
            return r;
        }

        /// <summary>Adds the slice v of a value row (16 bf16 entries) weighted by x_i for query i.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(Vector256<uint> v, Vector256<float> x0, Vector256<float> x1, Vector256<float> x2, Vector256<float> x3)
        {
            int g = TQueries.Count;
            var even = Even(v);
            var odd = Odd(v);
            _e0 = Fma.MultiplyAdd(even, x0, _e0); _o0 = Fma.MultiplyAdd(odd, x0, _o0);
            if (g > 1) { _e1 = Fma.MultiplyAdd(even, x1, _e1); _o1 = Fma.MultiplyAdd(odd, x1, _o1); }
            if (g > 2) { _e2 = Fma.MultiplyAdd(even, x2, _e2); _o2 = Fma.MultiplyAdd(odd, x2, _o2); }
            if (g > 3) { _e3 = Fma.MultiplyAdd(even, x3, _e3); _o3 = Fma.MultiplyAdd(odd, x3, _o3); }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Store(float* output, int d, int c)
        {
            int g = TQueries.Count;
            float* o = output + c;
            _e0.Store(o); _o0.Store(o + 8);
            if (g > 1) { _e1.Store(o + d); _o1.Store(o + d + 8); }
            if (g > 2) { _e2.Store(o + 2 * d); _o2.Store(o + 2 * d + 8); }
            if (g > 3) { _e3.Store(o + 3 * d); _o3.Store(o + 3 * d + 8); }
        }
    }
}
