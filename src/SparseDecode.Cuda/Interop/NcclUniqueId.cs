using System.Runtime.InteropServices;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>ncclUniqueId: 128 opaque bytes rank 0 makes and every rank passes to ncclCommInitRank (by value).</summary>
[StructLayout(LayoutKind.Sequential, Size = Bytes)]
internal unsafe struct NcclUniqueId
{
    public const int Bytes = 128;
    private fixed byte _internal[Bytes];

    public string ToHex()
    {
        fixed (byte* p = _internal) return Convert.ToHexString(new ReadOnlySpan<byte>(p, Bytes));
    }

    /// <summary>The id from its 256 hex digits; anything else is refused in one sentence.</summary>
    public static NcclUniqueId FromHex(string hex)
    {
        byte[] bytes;
        try
        {
            bytes = Convert.FromHexString(hex.Trim());
        }
        catch (FormatException)
        {
            bytes = [];
        }
        if (bytes.Length != Bytes) throw new ArgumentException($"An NCCL unique id is {Bytes * 2} hex digits; got '{(hex.Length > 40 ? hex[..40] + "…" : hex)}'.");
        var id = new NcclUniqueId();
        new ReadOnlySpan<byte>(bytes).CopyTo(new Span<byte>(id._internal, Bytes));
        return id;
    }
}
