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
            case DType.Q8:
                Q8ToSingle(src, dst);
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
            case DType.Q8:
                SingleToQ8(src, dst);
                break;
            default:
                var d = (ushort*)dst;
                for (int i = 0; i < src.Length; i++) d[i] = SingleToBf16(src[i]);
                break;
        }
    }

    /// <summary>A whole <see cref="DType.Q8"/> row of dst.Length entries (whole blocks) to f32.</summary>
    public static void Q8ToSingle(byte* src, Span<float> dst)
    {
        int n = CheckQ8Row(dst.Length);
        var q = (sbyte*)src;
        var scales = (float*)(src + n);
        for (int b = 0; b < n; b += DTypeExtensions.Q8Block)
        {
            float d = scales[b / DTypeExtensions.Q8Block];
            for (int i = b; i < b + DTypeExtensions.Q8Block; i++) dst[i] = q[i] * d;
        }
    }

    /// <summary>A row of src.Length entries (whole blocks) to <see cref="DType.Q8"/>: per block of 32, the scale is
    /// the largest magnitude / 127 and each entry the nearest multiple of it (ties to even). A block holding a
    /// non-finite entry stores a NaN scale, so every entry of it reads back as NaN and the fault stays visible
    /// instead of turning into finite numbers.</summary>
    public static void SingleToQ8(ReadOnlySpan<float> src, byte* dst)
    {
        int n = CheckQ8Row(src.Length);
        var q = (sbyte*)dst;
        var scales = (float*)(dst + n);
        for (int b = 0; b < n; b += DTypeExtensions.Q8Block)
        {
            var block = src.Slice(b, DTypeExtensions.Q8Block);
            float amax = TensorPrimitives.MaxMagnitude(block);
            amax = MathF.Abs(amax);
            if (!float.IsFinite(amax))
            {
                new Span<sbyte>(q + b, DTypeExtensions.Q8Block).Clear();
                scales[b / DTypeExtensions.Q8Block] = float.NaN;
                continue;
            }
            // x / d rather than x times 1 / d: for blocks of tiny entries 1 / d overflows to infinity
            float d = amax / 127;
            for (int i = 0; i < DTypeExtensions.Q8Block; i++)
                q[b + i] = d > 0 ? (sbyte)Math.Clamp(MathF.Round(block[i] / d), -127, 127) : (sbyte)0;
            scales[b / DTypeExtensions.Q8Block] = d;
        }
    }

    private static int CheckQ8Row(int n) => DType.Q8.StoresRowsOf(n) ? n
        : throw new ArgumentException($"A q8 row holds whole blocks of {DTypeExtensions.Q8Block} entries; {n} is not one.");

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
