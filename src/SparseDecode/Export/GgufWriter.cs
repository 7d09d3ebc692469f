using System.Text;

namespace SparseDecode.Export;

/// <summary>GGUF's value types (the numbers the format stores).</summary>
public enum GgufType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9,
    UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>ggml's tensor element types that an export writes.</summary>
public enum GgmlType : uint
{
    F32 = 0,
    F16 = 1,
    BF16 = 30,
}

/// <summary>Writes a GGUF file (version 3, little-endian): the header, the metadata key/values, the tensor infos,
/// then each tensor's data at an offset aligned to <see cref="Alignment"/>. Metadata and tensors are collected
/// first, since the infos hold every tensor's offset; tensor data is produced by a callback at write time, so a
/// checkpoint's weights are streamed from their memory map, never held twice.</summary>
public sealed class GgufWriter
{
    public const uint Magic = 0x46554747; // "GGUF"
    public const uint Version = 3;
    public const int Alignment = 32;

    private readonly List<(string Key, GgufType Type, object Value)> _metadata = [];
    private readonly List<(string Name, long[] Dims, GgmlType Type, long Bytes, Action<Stream> Write)> _tensors = [];

    public void Add(string key, string value) => _metadata.Add((key, GgufType.String, value));
    public void Add(string key, uint value) => _metadata.Add((key, GgufType.UInt32, value));
    public void Add(string key, int value) => _metadata.Add((key, GgufType.Int32, value));
    public void Add(string key, float value) => _metadata.Add((key, GgufType.Float32, value));
    public void Add(string key, bool value) => _metadata.Add((key, GgufType.Bool, value));
    public void Add(string key, string[] values) => _metadata.Add((key, GgufType.Array, values));
    public void Add(string key, int[] values) => _metadata.Add((key, GgufType.Array, values));

    /// <summary>A tensor of shape `dims` in ggml's order (dims[0] is the contiguous one: a [rows, cols] matrix is
    /// {cols, rows}); `write` must write exactly its bytes.</summary>
    public void AddTensor(string name, long[] dims, GgmlType type, Action<Stream> write)
    {
        long elements = dims.Aggregate(1L, (a, b) => a * b);
        long bytes = elements * (type == GgmlType.F32 ? 4 : 2);
        _tensors.Add((name, dims, type, bytes, write));
    }

    public void Write(Stream output)
    {
        var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, type, value) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            WriteValue(w, type, value);
        }
        long offset = 0;
        foreach (var t in _tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Dims.Length);
            foreach (long d in t.Dims) w.Write((ulong)d);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = Align(offset + t.Bytes);
        }
        w.Flush();
        Pad(output);
        long dataStart = output.Position;
        foreach (var t in _tensors)
        {
            long at = output.Position;
            t.Write(output);
            if (output.Position - at != t.Bytes)
                throw new InvalidOperationException($"Tensor {t.Name} wrote {output.Position - at} bytes, not {t.Bytes}.");
            Pad(output, dataStart);
        }
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s, long from = 0)
    {
        long pad = Align(s.Position - from) - (s.Position - from);
        for (long i = 0; i < pad; i++) s.WriteByte(0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteValue(BinaryWriter w, GgufType type, object value)
    {
        switch (value)
        {
            case string s: WriteString(w, s); break;
            case uint u: w.Write(u); break;
            case int i: w.Write(i); break;
            case float f: w.Write(f); break;
            case bool b: w.Write(b ? (byte)1 : (byte)0); break;
            case string[] strings:
                w.Write((uint)GgufType.String);
                w.Write((ulong)strings.Length);
                foreach (var s in strings) WriteString(w, s);
                break;
            case int[] ints:
                w.Write((uint)GgufType.Int32);
                w.Write((ulong)ints.Length);
                foreach (int i in ints) w.Write(i);
                break;
            default: throw new ArgumentException($"GGUF value of type {type} is not written by this writer.");
        }
    }
}
