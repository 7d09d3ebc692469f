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

    private static bool IsNaN(TensorView t, long i) => t.Type switch
    {
        DType.F32 => (((uint*)t.Data)[i] & 0x007F_FFFFu) != 0,
        DType.BF16 => (((ushort*)t.Data)[i] & 0x007F) != 0,
        _ => (((ushort*)t.Data)[i] & 0x03FF) != 0,
    };
}
