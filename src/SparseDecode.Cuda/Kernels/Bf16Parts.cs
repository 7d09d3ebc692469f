using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Kernels;

/// <summary>An f32 operand of the prefill's tensor-core products held as `Parts` bf16 arrays of `PartStride`
/// elements each, back to back from `Pointer`, whose sum is the value: 1 part is the value rounded to bf16, 3 parts
/// (hi + mid + lo) carry all 24 bits of its mantissa.</summary>
internal readonly record struct Bf16Parts(ulong Pointer, long PartStride, int Parts)
{
    /// <summary>Device address of part `p` (0 = the bf16 rounding, then the remainders).</summary>
    public ulong Part(int p) => Pointer + (ulong)(2 * p * PartStride);

    /// <summary>The same operand from row `row` on, for rows of `width` values.</summary>
    public Bf16Parts FromRow(int row, int width) => this with { Pointer = Pointer + (ulong)(2L * row * width) };
}
