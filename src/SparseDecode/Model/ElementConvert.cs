using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace SparseDecode.Model;

/// <summary>Element-type conversions between stored weights/caches and f32 working buffers.</summary>
public static unsafe class ElementConvert
{
    public static void ToSingle(DType type, byte* src, Span<float> dst)
    {
        switch (type)
        {
            case DType.F32:
                new ReadOnlySpan<float>(src, dst.Length).CopyTo(dst);
                break;
            case DType.F16:
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, dst.Length), dst);
                break;
            default:
                Bf16ToSingle((ushort*)src, dst);
                break;
        }
    }

    public static void FromSingle(ReadOnlySpan<float> src, DType type, byte* dst)
    {
        switch (type)
        {
            case DType.F32:
                src.CopyTo(new Span<float>(dst, src.Length));
                break;
            case DType.F16:
                TensorPrimitives.ConvertToHalf(src, new Span<Half>(dst, src.Length));
                break;
            default:
                var d = (ushort*)dst;
                for (int i = 0; i < src.Length; i++) d[i] = SingleToBf16(src[i]);
                break;
        }
    }

    public static void Bf16ToSingle(ushort* src, Span<float> dst)
    {
        int i = 0;
        fixed (float* d = dst)
        {
            if (Vector256.IsHardwareAccelerated)
            {
                for (; i <= dst.Length - 16; i += 16)
                {
                    var v = Vector256.Load(src + i);
                    Vector256.ShiftLeft(Vector256.WidenLower(v), 16).AsSingle().Store(d + i);
                    Vector256.ShiftLeft(Vector256.WidenUpper(v), 16).AsSingle().Store(d + i + 8);
                }
            }
            for (; i < dst.Length; i++) d[i] = Bf16ToSingle(src[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16ToSingle(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    /// <summary>Round to nearest even, as PyTorch does; NaN stays NaN.</summary>
    public static ushort SingleToBf16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
