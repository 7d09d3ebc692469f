using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using SparseDecode.Fuzz;
using SparseDecode.Model;

namespace SparseDecode.Tests.Properties;

/// <summary>Properties of the safetensors header parser over generated files: every well-formed layout is
/// accepted, every overlap is refused, and no corruption escapes as anything but a ModelFormatException.</summary>
public class SafetensorsProperties
{
    private static readonly (string Name, int Size)[] DTypes = [("F32", 4), ("F16", 2), ("BF16", 2), ("I64", 8), ("U8", 1)];

    /// <summary>Tensors as (dtype index, shape), laid out back to back.</summary>
    internal static readonly Gen<(int DType, int[] Shape)[]> Layouts =
        Gen.Select(Gen.Int[0, DTypes.Length - 1], Gen.Int[0, 5].Array[0, 3]).Array[1, 6];

    internal static byte[] File((int DType, int[] Shape)[] tensors, Func<int, long>? shift = null)
    {
        var header = new JsonObject { ["__metadata__"] = new JsonObject { ["format"] = "pt" } };
        long at = 0, end = 0;
        for (int i = 0; i < tensors.Length; i++)
        {
            var (d, shape) = tensors[i];
            long bytes = DTypes[d].Size * shape.Aggregate(1L, (p, x) => p * x);
            long begin = Math.Max(0, at + (shift?.Invoke(i) ?? 0));
            header[$"t{i}"] = new JsonObject
            {
                ["dtype"] = DTypes[d].Name,
                ["shape"] = new JsonArray([.. shape.Select(x => (JsonNode)x)]),
                ["data_offsets"] = new JsonArray(begin, begin + bytes),
            };
            at = begin + bytes;
            end = Math.Max(end, at);
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        return [.. BitConverter.GetBytes((ulong)json.Length), .. json, .. new byte[end]];
    }

    [Fact]
    public void WellFormedLayoutsAreAccepted() =>
        Layouts.Sample(t => Assert.Equal(t.Length, SafetensorsFile.Validate(File(t), "p.safetensors")), iter: 300, threads: 1);

    [Fact]
    public void ARangeReachingIntoItsPredecessorIsRefused() =>
        Gen.Select(Layouts, Gen.Int[1, 8], Gen.Int[0, 5]).Sample((t, back, which) =>
        {
            int i = which % t.Length;
            var bytes = File(t, k => k == i ? -back : 0);
            // Only a real overlap must be refused: the shifted tensor and its predecessor both hold bytes.
            long Size(int k) => DTypes[t[k].DType].Size * t[k].Shape.Aggregate(1L, (p, x) => p * x);
            bool overlaps = i > 0 && Size(i) > 0 && Enumerable.Range(0, i).Any(k => Size(k) > 0);
            if (!overlaps)
            {
                try { SafetensorsFile.Validate(bytes, "p.safetensors"); } catch (ModelFormatException) { }
                return;
            }
            var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Validate(bytes, "p.safetensors"));
            Assert.Contains("overlap", e.Message);
        }, iter: 300, threads: 1);

    [Fact]
    public void CorruptFilesFailOnlyWithAFormatError() =>
        Gen.Select(Layouts, Gen.Int).Sample((t, seed) =>
        {
            var random = new Random(seed);
            var file = File(t);
            for (int i = 0; i < 8; i++) FuzzTargets.Safetensors(FuzzTargets.Mutate(file, file, random));
        }, iter: 300, threads: 1);
}
