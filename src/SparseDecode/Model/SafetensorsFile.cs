using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace SparseDecode.Model;

/// <summary>One memory-mapped .safetensors file: an 8-byte header length, a JSON header naming each tensor's
/// dtype, shape and byte range, then the data. Every number in the header is checked against the file before
/// any byte is read, so a truncated or corrupt file is refused instead of read out of bounds.</summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    private readonly record struct Entry(string DType, long[] Shape, long Begin, long End);

    public string Path { get; }
    public IEnumerable<string> TensorNames => _entries.Keys;

    private SafetensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        Path = path;
        _map = map;
        _view = view;
        byte* p = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = p + _view.PointerOffset;
    }

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found.");
        long length = new FileInfo(path).Length;
        if (length < 8) throw new ModelFormatException($"{path}: file is {length} bytes, too short for a safetensors header.");
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        var file = new SafetensorsFile(path, map, view);
        try
        {
            file.ParseHeader(length);
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The safetensors format caps its JSON header at 100 MB; a larger length is corruption, and would not
    /// fit the array the header is parsed from.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private void ParseHeader(long fileLength)
    {
        ulong declared = *(ulong*)_base;
        long available = Math.Min(fileLength, 8 + Math.Min((long)Math.Min(declared, (ulong)MaxHeaderBytes), fileLength));
        _dataStart = ParseHeader(Path, new ReadOnlySpan<byte>(_base, (int)available), fileLength, _entries);
    }

    /// <summary>Checks a whole safetensors file held in memory exactly as <see cref="Open"/> checks one on disk;
    /// returns its tensor count or throws <see cref="ModelFormatException"/> (for property tests and fuzzing).</summary>
    public static int Validate(ReadOnlySpan<byte> file, string path)
    {
        if (file.Length < 8) throw new ModelFormatException($"{path}: file is {file.Length} bytes, too short for a safetensors header.");
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        ParseHeader(path, file, file.Length, entries);
        return entries.Count;
    }

    /// <summary>Parses the header from `start` (the file's first bytes: the length and as much of the header as the
    /// file holds, up to the format's limit) into `entries`; returns where the data section begins.</summary>
    private static long ParseHeader(string path, ReadOnlySpan<byte> start, long fileLength, Dictionary<string, Entry> entries)
    {
        ulong headerLength = BitConverter.ToUInt64(start[..8]);
        if (headerLength > (ulong)(fileLength - 8))
            throw new ModelFormatException($"{path}: header length {headerLength} runs past the end of the {fileLength}-byte file.");
        if (headerLength > MaxHeaderBytes)
            throw new ModelFormatException($"{path}: header length {headerLength} exceeds the format's limit of {MaxHeaderBytes} bytes.");
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;
        JsonDocument doc;
        var header = start.Slice(8, (int)headerLength);
        try
        {
            doc = JsonDocument.Parse(header.ToArray());
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{path}: the header is not valid JSON ({e.Message}).");
        }
        using (doc)
        {
            if (JsonText.FirstInvalid(header, 64) is string at)
                throw new ModelFormatException($"{path}: the header holds a string that is not valid UTF-8 or has a lone surrogate{JsonText.Where(at)}.");
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{path}: the header is not a JSON object.");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__") continue;
                if (!entries.TryAdd(prop.Name, ParseEntry(path, prop.Name, prop.Value, dataLength)))
                    throw new ModelFormatException($"{path}: tensor '{prop.Name}' appears twice in the header.");
            }
        }
        CheckDisjoint(path, entries);
        return dataStart;
    }

    /// <summary>Two tensors sharing bytes would alias each other's weights (a crafted file could make one tensor
    /// read another's data); in order of their start, each range must begin at or after the previous one's end.</summary>
    private static void CheckDisjoint(string path, Dictionary<string, Entry> entries)
    {
        var ranges = entries.Where(kv => kv.Value.End > kv.Value.Begin).OrderBy(kv => kv.Value.Begin).ThenBy(kv => kv.Value.End).ToList();
        for (int i = 1; i < ranges.Count; i++)
            if (ranges[i].Value.Begin < ranges[i - 1].Value.End)
                throw new ModelFormatException($"{path}: tensors '{ranges[i - 1].Key}' [{ranges[i - 1].Value.Begin}, {ranges[i - 1].Value.End}) and '{ranges[i].Key}' [{ranges[i].Value.Begin}, {ranges[i].Value.End}) overlap in the data section.");
    }

    private long _dataStart;

    private static Entry ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        try
        {
            string dtype = e.GetProperty("dtype").GetString() ?? "";
            long[] shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            var offsets = e.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
                throw new ModelFormatException($"{path}: tensor '{name}' has data offsets [{string.Join(", ", offsets)}] outside the {dataLength}-byte data section (truncated file?).");
            if (shape.Any(d => d < 0))
                throw new ModelFormatException($"{path}: tensor '{name}' has a negative dimension.");
            int size = ElementSize(dtype);
            if (size > 0)
            {
                // Checked: an F32 [2^62] entry's byte count would otherwise wrap to 0 and match an empty range.
                long bytes = size;
                foreach (long d in shape) bytes = checked(bytes * d);
                if (bytes != offsets[1] - offsets[0])
                    throw new ModelFormatException($"{path}: tensor '{name}' of shape [{string.Join(", ", shape)}] and dtype {dtype} needs {bytes} bytes but its data range holds {offsets[1] - offsets[0]}.");
            }
            return new Entry(dtype, shape, offsets[0], offsets[1]);
        }
        catch (OverflowException)
        {
            throw new ModelFormatException($"{path}: tensor '{name}' has a shape whose byte count overflows 64 bits.");
        }
        catch (KeyNotFoundException)
        {
            throw new ModelFormatException($"{path}: tensor '{name}' lacks one of 'dtype', 'shape' and 'data_offsets'.");
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            throw new ModelFormatException($"{path}: tensor '{name}' has a malformed header entry: 'dtype' must be a string, 'shape' and 'data_offsets' arrays of integers.");
        }
    }

    private static int ElementSize(string dtype) => dtype switch
    {
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "F64" or "I64" or "U64" => 8,
        "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => 0,
    };

    public bool Contains(string name) => _entries.ContainsKey(name);

    /// <summary>The tensor as stored; refuses element types the engine does not compute in.</summary>
    public TensorView Get(string name)
    {
        if (!_entries.TryGetValue(name, out var e))
            throw new ModelFormatException($"{Path}: tensor '{name}' is missing.");
        DType type = e.DType switch
        {
            "F32" => DType.F32,
            "F16" => DType.F16,
            "BF16" => DType.BF16,
            _ => throw new ModelFormatException($"{Path}: tensor '{name}' has dtype {e.DType}; only F32, F16 and BF16 are supported."),
        };
        return new TensorView(name, type, e.Shape, _base + _dataStart + e.Begin);
    }

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
