using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Dot products of an f32 vector with a row stored as f32, bf16, f16 or q8, f32 accumulation.</summary>
public static unsafe class Dot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Row(DType type, byte* row, float* x, int n) => type switch
    {
        DType.F32 => F32((float*)row, x, n),
        DType.BF16 => Bf16((ushort*)row, x, n),
        DType.Q8 => Q8(row, x, n),
        _ => F16((Half*)row, x, n),
    };

    /// <summary>A <see cref="DType.Q8"/> row (n entries, whole blocks) · b: each block's products summed, then scaled.</summary>
    public static float Q8(byte* row, float* b, int n)
    {
        var q = (sbyte*)row;
        var scales = (float*)(row + n);
        const int block = DTypeExtensions.Q8Block;
        if (Avx2.IsSupported && Fma.IsSupported)
        {
            var acc = Vector256<float>.Zero;
            for (int c = 0; c < n; c += block)
            {
                var products = Q8GroupKernel.Block32(Q8GroupKernel.Lanes(q + c), Q8GroupKernel.Lanes(q + c + 8),
                    Q8GroupKernel.Lanes(q + c + 16), Q8GroupKernel.Lanes(q + c + 24), b + c);
                acc = Fma.MultiplyAdd(products, Vector256.Create(scales[c / block]), acc);
            }
            return Vector256.Sum(acc);
        }
        float sum = 0;
        for (int c = 0; c < n; c += block)
        {
            float s = 0;
            for (int i = c; i < c + block; i++) s += q[i] * b[i];
            sum += s * scales[c / block];
        }
        return sum;
    }

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
            case DType.Q8:
                var q = (sbyte*)row;
                var scales = (float*)(row + n);
                const int block = DTypeExtensions.Q8Block;
                for (; i < n; i += block)
                {
                    float ws = w * scales[i / block];
                    if (Avx2.IsSupported && Fma.IsSupported)
                    {
                        var x = Vector256.Create(ws);
                        for (int k = i; k < i + block; k += 8)
                            Fma.MultiplyAdd(Q8GroupKernel.Lanes(q + k), x, Vector256.Load(y + k)).Store(y + k);
                    }
                    else
                        for (int k = i; k < i + block; k++) y[k] += ws * q[k];
                }
                break;
            default:
                var h = (Half*)row;
                for (; i < n; i++) y[i] += w * (float)h[i];
                break;
        }
    }
}
