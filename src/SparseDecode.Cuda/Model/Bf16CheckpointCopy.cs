using System.Text.Json;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Model;

/// <summary>Writes a copy of a checkpoint whose matrices are rounded to bf16 exactly as the GPU upload rounds them
/// (round to nearest even), vectors (norms, biases) kept in their stored type, so the CPU engine can run on the
/// very weights the GPU holds: the parity reference for f32 and f16 checkpoints.</summary>
internal static unsafe class Bf16CheckpointCopy
{
    public static void Write(string sourceDirectory, string targetDirectory)
    {
        Directory.CreateDirectory(targetDirectory);
        foreach (var name in new[] { "config.json", "generation_config.json" })
        {
            var src = Path.Combine(sourceDirectory, name);
            if (File.Exists(src)) File.Copy(src, Path.Combine(targetDirectory, name), overwrite: true);
        }
        using var store = WeightStore.Open(sourceDirectory);
        var tensors = store.All().OrderBy(t => t.Name, StringComparer.Ordinal).ToArray();
        var header = new Dictionary<string, object>();
        long offset = 0;
        var plan = new List<(TensorView T, bool ToBf16, long Bytes)>();
        foreach (var t in tensors)
        {
            bool toBf16 = t.Shape.Length == 2 && t.Type != DType.BF16;
            var type = toBf16 ? DType.BF16 : t.Type;
            long bytes = t.ElementCount * type.SizeInBytes();
            header[t.Name] = new Dictionary<string, object>
            {
                ["dtype"] = type switch { DType.F32 => "F32", DType.F16 => "F16", _ => "BF16" },
                ["shape"] = t.Shape,
                ["data_offsets"] = new[] { offset, offset + bytes },
            };
            plan.Add((t, toBf16, bytes));
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header, HeaderJson.Default.DictionaryStringObject);
        int padded = (json.Length + 7) / 8 * 8;
        using var f = File.Create(Path.Combine(targetDirectory, "model.safetensors"));
        Span<byte> len = stackalloc byte[8];
        BitConverter.TryWriteBytes(len, (ulong)padded);
        f.Write(len);
        f.Write(json);
        for (int i = json.Length; i < padded; i++) f.WriteByte((byte)' ');
        foreach (var (t, toBf16, bytes) in plan)
        {
            if (!toBf16)
            {
                f.Write(new ReadOnlySpan<byte>(t.Data, checked((int)bytes)));
                continue;
            }
            var floats = new float[t.ElementCount];
            ElementConvert.ToSingle(t.Type, t.Data, floats);
            var out16 = new byte[bytes];
            fixed (byte* o = out16) ElementConvert.FromSingle(floats, DType.BF16, o);
            f.Write(out16);
        }
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, object>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, object>[]))]
[System.Text.Json.Serialization.JsonSerializable(typeof(long[]))]
[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class HeaderJson : System.Text.Json.Serialization.JsonSerializerContext;
