namespace SparseDecode.Cpu;

/// <summary>How the group kernels (<see cref="Bf16GroupKernel"/>, <see cref="Q8GroupKernel"/>) take a group of query
/// heads: in runs of up to four, each run's size a type so that the JIT compiles one register layout per size.</summary>
internal static unsafe class QueryGroups
{
    public interface IQueries { static abstract int Count { get; } }
    public struct One : IQueries { public static int Count => 1; }
    public struct Two : IQueries { public static int Count => 2; }
    public struct Three : IQueries { public static int Count => 3; }
    public struct Four : IQueries { public static int Count => 4; }

    /// <summary>A kernel's weighted sum of value rows for TQueries.Count queries: output_i += Σ_j w_i[j] · V[j] over
    /// rows[0..count), w_i at w + i·stride, output_i at output + i·d.</summary>
    public interface IWeightedValues
    {
        static abstract void Add<TQueries>(byte** rows, int count, float* w, long stride, float* output, int d) where TQueries : struct, IQueries;
    }

    /// <summary>TKernel's weighted values for `group` queries (any number): fours, then one run of the rest.</summary>
    public static void AddWeightedValues<TKernel>(byte** rows, int count, float* weights, long stride, float* output, int d, int group)
        where TKernel : IWeightedValues
    {
        int i = 0;
        for (; i + 4 <= group; i += 4) TKernel.Add<Four>(rows, count, weights + i * stride, stride, output + (long)i * d, d);
        switch (group - i)
        {
            case 3: TKernel.Add<Three>(rows, count, weights + i * stride, stride, output + (long)i * d, d); break;
            case 2: TKernel.Add<Two>(rows, count, weights + i * stride, stride, output + (long)i * d, d); break;
            case 1: TKernel.Add<One>(rows, count, weights + i * stride, stride, output + (long)i * d, d); break;
        }
    }
}
