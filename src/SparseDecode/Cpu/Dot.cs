using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Dot products of an f32 vector with a row stored as f32, bf16 or f16, f32 accumulation.</summary>
public static unsafe class Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Row(DType type, byte* row, float* x, int n) => type switch
    {
        DType.F32 => F32((float*)row, x, n),
        DType.BF16 => Bf16((ushort*)row, x, n),
        _ => F16((Half*)row, x, n),
    };

    public static float F32(float* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; i <= n - 16; i += 16)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
            }
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    public static float Bf16(ushort* a, float* b, int n)
    {
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; i <= n - 16; i += 16)
            {
                var v = Vector256.Load(a + i);
                var lo = Vector256.ShiftLeft(Vector256.WidenLower(v), 16).AsSingle();
                var hi = Vector256.ShiftLeft(Vector256.WidenUpper(v), 16).AsSingle();
                acc0 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(b + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(b + i + 8), acc1);
            }
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; i < n; i++) sum += ElementConvert.Bf16ToSingle(a[i]) * b[i];
        return sum;
    }

    public static float F16(Half* a, float* b, int n)
    {
        Span<float> chunk = stackalloc float[256];
        float sum = 0;
        for (int i = 0; i < n; i += 256)
        {
            int len = Math.Min(256, n - i);
            var c = chunk[..len];
            TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(a + i, len), c);
            fixed (float* cp = c) sum += F32(cp, b + i, len);
        }
        return sum;
    }

    /// <summary>y += w * row, row in its stored type (the value accumulation of attention).</summary>
    public static void AddScaledRow(DType type, byte* row, float w, float* y, int n)
    {
        int i = 0;
        var wv = Vector256.Create(w);
        switch (type)
        {
            case DType.F32:
                var r = (float*)row;
                if (Vector256.IsHardwareAccelerated)
                    for (; i <= n - 8; i += 8)
                        Vector256.FusedMultiplyAdd(Vector256.Load(r + i), wv, Vector256.Load(y + i)).Store(y + i);
                for (; i < n; i++) y[i] += w * r[i];
                break;
            case DType.BF16:
                var b = (ushort*)row;
                if (Vector256.IsHardwareAccelerated)
                    for (; i <= n - 16; i += 16)
                    {
                        var v = Vector256.Load(b + i);
                        Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(Vector256.WidenLower(v), 16).AsSingle(), wv, Vector256.Load(y + i)).Store(y + i);
                        Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(Vector256.WidenUpper(v), 16).AsSingle(), wv, Vector256.Load(y + i + 8)).Store(y + i + 8);
                    }
                for (; i < n; i++) y[i] += w * ElementConvert.Bf16ToSingle(b[i]);
                break;
            default:
                var h = (Half*)row;
                for (; i < n; i++) y[i] += w * (float)h[i];
                break;
        }
    }
}
