namespace SparseDecode.Model;

/// <summary>Finds NaN and infinite weights, which otherwise load silently and surface only as NaN logits (an
/// immediate EOS, or a failure far away in a JSON writer). Reads every byte of the checkpoint once, so it is
/// opt-in (inspect --check-weights) rather than part of every load.</summary>
public static unsafe class WeightCheck
{
    public readonly record struct Finding(string Tensor, long Element, string Kind);

    /// <summary>The first non-finite element in tensor-name order, or null when every weight is finite.</summary>
    public static Finding? FirstNonFinite(WeightStore store)
    {
        foreach (var t in store.All().OrderBy(t => t.Name, StringComparer.Ordinal))
            if (FirstNonFinite(t) is long i)
                return new Finding(t.Name, i, IsNaN(t, i) ? "NaN" : "infinity");
        return null;
    }

    /// <summary>Index of the first element whose exponent bits are all ones (NaN or ±∞), tested on the stored bits
    /// so that no element is converted.</summary>
    public static long? FirstNonFinite(TensorView t)
    {
        long n = t.ElementCount;
        switch (t.Type)
        {
            case DType.F32:
                var f = (uint*)t.Data;
                for (long i = 0; i < n; i++) if ((f[i] & 0x7F80_0000u) == 0x7F80_0000u) return i;
                return null;
            case DType.BF16:
                var b = (ushort*)t.Data;
                for (long i = 0; i < n; i++) if ((b[i] & 0x7F80) == 0x7F80) return i;
                return null;
            case DType.F16:
                var h = (ushort*)t.Data;
                for (long i = 0; i < n; i++) if ((h[i] & 0x7C00) == 0x7C00) return i;
                return null;
            default:
                return null;
        }
    }

    /// <summary>Elements looked at by <see cref="LooksLikeBf16"/>: the tensor's first 64 KB at most, one page or a few,
    /// so that the check costs nothing next to reading the weights.</summary>
    private const int Bf16Sample = 32_768;

    /// <summary>Whether an F16-labelled matrix holds bf16 bits. Read as f16, a bf16 value of any magnitude from 2^-31
    /// to 2^8 has an exponent field of 12 to 16 (|x| in [0.125, 4)), so such a tensor has no values near zero; a
    /// trained or randomly initialised weight matrix has many (a Gaussian's 10% within 0.125 of zero even at
    /// standard deviation 1). Vectors (norms, biases) are not judged: theirs can all be near one.</summary>
    public static bool LooksLikeBf16(TensorView t)
    {
        if (t.Type != DType.F16 || t.Shape.Length < 2) return false;
        var h = (ushort*)t.Data;
        long n = Math.Min(t.ElementCount, Bf16Sample);
        int nonZero = 0, bf16Like = 0;
        for (long i = 0; i < n; i++)
        {
            int exponent = (h[i] >> 10) & 0x1F;
            if ((h[i] & 0x7FFF) == 0) continue;
            nonZero++;
            if (exponent is >= 12 and <= 16) bf16Like++;
        }
        // Too few values to judge, or some near zero: f16 as labelled.
        return nonZero >= 256 && bf16Like == nonZero;
    }

    private static bool IsNaN(TensorView t, long i) => t.Type switch
    {
        DType.F32 => (((uint*)t.Data)[i] & 0x007F_FFFFu) != 0,
        DType.BF16 => (((ushort*)t.Data)[i] & 0x007F) != 0,
        _ => (((ushort*)t.Data)[i] & 0x03FF) != 0,
    };
}
