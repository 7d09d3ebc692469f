using System.Text;

namespace SparseDecode.Tests.Export;

/// <summary>A GGUF reader written from the format's specification, independent of the writer: metadata values
/// and tensor infos, and each tensor's bytes.</summary>
internal sealed class GgufReader
{
    public sealed record Tensor(string Name, long[] Dims, uint Type, long Offset);

    public Dictionary<string, object> Metadata { get; } = new(StringComparer.Ordinal);
    public List<Tensor> Tensors { get; } = [];
    public uint Version { get; }
    private readonly byte[] _bytes;
    private readonly long _dataStart;

    public GgufReader(string path)
    {
        _bytes = File.ReadAllBytes(path);
        using var r = new BinaryReader(new MemoryStream(_bytes), Encoding.UTF8);
        if (r.ReadUInt32() != 0x46554747) throw new InvalidDataException("not GGUF");
        Version = r.ReadUInt32();
        long tensors = (long)r.ReadUInt64(), kvs = (long)r.ReadUInt64();
        for (long i = 0; i < kvs; i++)
        {
            string key = ReadString(r);
            Metadata[key] = ReadValue(r, r.ReadUInt32());
        }
        for (long i = 0; i < tensors; i++)
        {
            string name = ReadString(r);
            var dims = new long[r.ReadUInt32()];
            for (int d = 0; d < dims.Length; d++) dims[d] = (long)r.ReadUInt64();
            Tensors.Add(new Tensor(name, dims, r.ReadUInt32(), (long)r.ReadUInt64()));
        }
        long alignment = Metadata.TryGetValue("general.alignment", out var a) ? (uint)a : 32;
        _dataStart = (r.BaseStream.Position + alignment - 1) / alignment * alignment;
    }

    public ReadOnlySpan<byte> Data(Tensor t)
    {
        long elements = t.Dims.Aggregate(1L, (x, y) => x * y);
        int size = t.Type switch { 0 => 4, 1 or 30 => 2, _ => throw new InvalidDataException($"type {t.Type}") };
        return _bytes.AsSpan((int)(_dataStart + t.Offset), (int)(elements * size));
    }

    private static string ReadString(BinaryReader r) => Encoding.UTF8.GetString(r.ReadBytes((int)r.ReadUInt64()));

    private static object ReadValue(BinaryReader r, uint type) => type switch
    {
        0 => r.ReadByte(),
        1 => r.ReadSByte(),
        2 => r.ReadUInt16(),
        3 => r.ReadInt16(),
        4 => r.ReadUInt32(),
        5 => r.ReadInt32(),
        6 => r.ReadSingle(),
        7 => r.ReadByte() != 0,
        8 => ReadString(r),
        9 => ReadArray(r),
        10 => r.ReadUInt64(),
        11 => r.ReadInt64(),
        12 => r.ReadDouble(),
        _ => throw new InvalidDataException($"value type {type}"),
    };

    private static object[] ReadArray(BinaryReader r)
    {
        uint type = r.ReadUInt32();
        var items = new object[(long)r.ReadUInt64()];
        for (long i = 0; i < items.Length; i++) items[i] = ReadValue(r, type);
        return items;
    }
}
