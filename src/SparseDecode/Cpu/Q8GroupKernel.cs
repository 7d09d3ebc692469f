using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SparseDecode.Model;
using static SparseDecode.Cpu.QueryGroups;

namespace SparseDecode.Cpu;

/// <summary>The inner loops of <see cref="GroupAttention"/> for a q8 cache (<see cref="DType.Q8"/>) on AVX2 + FMA: a
/// group's scores over a block of key rows and its weighted sum of value rows, the rows' bytes widened to f32 in
/// registers once for all of the group's queries.
///
/// A score adds each block of 32 entries' products with the query, then that sum times the block's scale, as
/// <see cref="Dot.Q8"/> does, so it does not depend on which kernel computed it. Up to 4 queries are taken per row:
/// a slice of 8 bytes is widened once (two instructions) and feeds every query's accumulator. Weighted values keep
/// one block (32 entries) of up to 4 queries' outputs in registers over the whole block of rows, each row's weight
/// times its block's scale broadcast once per query; every output element adds the rows one at a time in order, as
/// <see cref="Dot.AddScaledRow"/> would.</summary>
internal static unsafe class Q8GroupKernel
{
    private const int Block = DTypeExtensions.Q8Block;

    /// <summary>Whether this machine runs the kernel for rows of `d` entries.</summary>
    public static bool Supports(int d) => Avx2.IsSupported && Fma.IsSupported && d % Block == 0;

    /// <summary>8 entries of a q8 row from `at`, as f32 (before their block's scale).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Lanes(sbyte* at) => Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(at));

    /// <summary>For `group` queries (natural order) at q + i·d: scores[i·stride + j] = scale · q_i·K[j] for the
    /// `count` rows rows[0..count).</summary>
    public static void Scores(byte** rows, int count, float* q, int group, int d, float scale, float* scores, long stride)
    {
        int i = 0;
        for (; i + 4 <= group; i += 4) ScoresOf<Four>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride);
        switch (group - i)
        {
            case 3: ScoresOf<Three>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride); break;
            case 2: ScoresOf<Two>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride); break;
            case 1: ScoresOf<One>(rows, count, q + (long)i * d, d, scale, scores + i * stride, stride); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoresOf<TQueries>(byte** rows, int count, float* q, int d, float scale, float* scores, long stride)
        where TQueries : struct, IQueries
    {
        int g = TQueries.Count;
        float* q1 = q + d, q2 = q + 2 * d, q3 = q + 3 * d;
        for (int j = 0; j < count; j++)
        {
            var bytes = (sbyte*)rows[j];
            var scales = (float*)(rows[j] + d);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int c = 0; c < d; c += Block)
            {
                var x0 = Lanes(bytes + c);
                var x1 = Lanes(bytes + c + 8);
                var x2 = Lanes(bytes + c + 16);
                var x3 = Lanes(bytes + c + 24);
                var s = Vector256.Create(scales[c / Block]);
                a0 = Fma.MultiplyAdd(Block32(x0, x1, x2, x3, q + c), s, a0);
                if (g > 1) a1 = Fma.MultiplyAdd(Block32(x0, x1, x2, x3, q1 + c), s, a1);
                if (g > 2) a2 = Fma.MultiplyAdd(Block32(x0, x1, x2, x3, q2 + c), s, a2);
                if (g > 3) a3 = Fma.MultiplyAdd(Block32(x0, x1, x2, x3, q3 + c), s, a3);
            }
            scores[j] = Vector256.Sum(a0) * scale;
            if (g > 1) scores[stride + j] = Vector256.Sum(a1) * scale;
            if (g > 2) scores[2 * stride + j] = Vector256.Sum(a2) * scale;
            if (g > 3) scores[3 * stride + j] = Vector256.Sum(a3) * scale;
        }
    }

    /// <summary>The products of one block of 32 widened entries with the query's 32 entries at q, in 8 lanes (also
    /// <see cref="Dot.Q8"/>'s, so a score does not depend on which of the two computed it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Block32(Vector256<float> x0, Vector256<float> x1, Vector256<float> x2, Vector256<float> x3, float* q) =>
        Fma.MultiplyAdd(x0, Vector256.Load(q), Vector256.Load(q + 8) * x1) + Fma.MultiplyAdd(x2, Vector256.Load(q + 16), Vector256.Load(q + 24) * x3);

    /// <summary>The weighted sum of value rows (outputs in the natural order), for <see cref="QueryGroups.AddWeightedValues"/>.</summary>
    internal struct Values : IWeightedValues
    {
        /// <summary>One block of TQueries.Count (1-4) queries' outputs at a time, in registers over all rows: up to 16
        /// accumulators, each row's block widened once for all queries.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public static void Add<TQueries>(byte** rows, int count, float* w, long stride, float* output, int d)
            where TQueries : struct, IQueries
        {
            int g = TQueries.Count;
            for (int c = 0; c < d; c += Block)
            {
                var o = new Outputs(output + c, d, g);
                for (int j = 0; j < count; j++)
                {
                    var bytes = (sbyte*)rows[j] + c;
                    float s = ((float*)(rows[j] + d))[c / Block];
                    var x0 = Lanes(bytes);
                    var x1 = Lanes(bytes + 8);
                    var x2 = Lanes(bytes + 16);
                    var x3 = Lanes(bytes + 24);
                    o.Add(0, x0, x1, x2, x3, Vector256.Create(w[j] * s));
                    if (g > 1) o.Add(1, x0, x1, x2, x3, Vector256.Create(w[stride + j] * s));
                    if (g > 2) o.Add(2, x0, x1, x2, x3, Vector256.Create(w[2 * stride + j] * s));
                    if (g > 3) o.Add(3, x0, x1, x2, x3, Vector256.Create(w[3 * stride + j] * s));
                }
                o.Store(output + c, d, g);
            }
        }
    }

    /// <summary>One block (32 entries) of up to 4 queries' outputs held in registers.</summary>
    private struct Outputs
    {
        private Vector256<float> _a0, _a1, _a2, _a3, _b0, _b1, _b2, _b3, _c0, _c1, _c2, _c3, _d0, _d1, _d2, _d3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Outputs(float* o, int d, int g)
        {
            _a0 = Vector256.Load(o); _a1 = Vector256.Load(o + 8); _a2 = Vector256.Load(o + 16); _a3 = Vector256.Load(o + 24);
            if (g > 1) { o += d; _b0 = Vector256.Load(o); _b1 = Vector256.Load(o + 8); _b2 = Vector256.Load(o + 16); _b3 = Vector256.Load(o + 24); }
            if (g > 2) { o += d; _c0 = Vector256.Load(o); _c1 = Vector256.Load(o + 8); _c2 = Vector256.Load(o + 16); _c3 = Vector256.Load(o + 24); }
            if (g > 3) { o += d; _d0 = Vector256.Load(o); _d1 = Vector256.Load(o + 8); _d2 = Vector256.Load(o + 16); _d3 = Vector256.Load(o + 24); }
        }

        /// <summary>Query i's block += x × (its row's weight × block scale).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Add(int i, Vector256<float> x0, Vector256<float> x1, Vector256<float> x2, Vector256<float> x3, Vector256<float> ws)
        {
            switch (i)
            {
                case 0: _a0 = Fma.MultiplyAdd(x0, ws, _a0); _a1 = Fma.MultiplyAdd(x1, ws, _a1); _a2 = Fma.MultiplyAdd(x2, ws, _a2); _a3 = Fma.MultiplyAdd(x3, ws, _a3); break;
                case 1: _b0 = Fma.MultiplyAdd(x0, ws, _b0); _b1 = Fma.MultiplyAdd(x1, ws, _b1); _b2 = Fma.MultiplyAdd(x2, ws, _b2); _b3 = Fma.MultiplyAdd(x3, ws, _b3); break;
                case 2: _c0 = Fma.MultiplyAdd(x0, ws, _c0); _c1 = Fma.MultiplyAdd(x1, ws, _c1); _c2 = Fma.MultiplyAdd(x2, ws, _c2); _c3 = Fma.MultiplyAdd(x3, ws, _c3); break;
                default: _d0 = Fma.MultiplyAdd(x0, ws, _d0); _d1 = Fma.MultiplyAdd(x1, ws, _d1); _d2 = Fma.MultiplyAdd(x2, ws, _d2); _d3 = Fma.MultiplyAdd(x3, ws, _d3); break;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Store(float* o, int d, int g)
        {
            _a0.Store(o); _a1.Store(o + 8); _a2.Store(o + 16); _a3.Store(o + 24);
            if (g > 1) { o += d; _b0.Store(o); _b1.Store(o + 8); _b2.Store(o + 16); _b3.Store(o + 24); }
            if (g > 2) { o += d; _c0.Store(o); _c1.Store(o + 8); _c2.Store(o + 16); _c3.Store(o + 24); }
            if (g > 3) { o += d; _d0.Store(o); _d1.Store(o + 8); _d2.Store(o + 16); _d3.Store(o + 24); }
        }
    }
}
