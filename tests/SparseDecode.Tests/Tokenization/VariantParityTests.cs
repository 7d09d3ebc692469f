using System.IO.Compression;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using SparseDecode.Tokenization;
using Xunit;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Parity with Hugging Face beyond the fixtures: ~600 adversarial texts through the fixture tokenizers
/// and variants of them (Metaspace schemes, added-token flags, Split behaviors, unknown-token fusing, ...), as
/// recorded by Data/make_variant_vectors.py in Data/hf-variants.json.gz.</summary>
public sealed class VariantParityTests : IDisposable
{
    readonly TokenizerTestFiles _files = new();

    public void Dispose() => _files.Dispose();

    static readonly Lazy<JsonDocument> Data = new(() =>
    {
        using var gz = new GZipStream(File.OpenRead(DataPath()), CompressionMode.Decompress);
        return JsonDocument.Parse(gz);
    });

    /// <summary>The data file sits beside this source file; it is found from the compile-time path, or by
    /// walking up from the test assembly when paths were remapped.</summary>
    static string DataPath([CallerFilePath] string sourceFile = "")
    {
        const string name = "hf-variants.json.gz";
        string beside = Path.Combine(Path.GetDirectoryName(sourceFile) ?? "", "Data", name);
        if (File.Exists(beside)) return beside;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "SparseDecode.Tests", "Tokenization", "Data", name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"{name} was found neither beside {sourceFile} nor above {AppContext.BaseDirectory}.");
    }

    public static TheoryData<string> Variants
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (var v in Data.Value.RootElement.GetProperty("variants").EnumerateObject()) data.Add(v.Name);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void VariantMatchesHuggingFace(string name)
    {
        var root = Data.Value.RootElement;
        var variant = root.GetProperty("variants").GetProperty(name);
        var json = JsonNode.Parse(File.ReadAllText(FixtureVectors.TokenizerPath(variant.GetProperty("base").GetString()!)))!;
        foreach (var o in variant.GetProperty("overrides").EnumerateObject())
        {
            var value = JsonNode.Parse(o.Value.GetRawText());
            if (o.Name.StartsWith("model.", StringComparison.Ordinal)) json["model"]![o.Name["model.".Length..]] = value;
            else json[o.Name] = value;
        }
        var tok = _files.Load(json, name + ".json");

        var texts = root.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToArray();
        var failures = new List<string>();
        int i = 0;
        foreach (var v in variant.GetProperty("vectors").EnumerateArray())
        {
            string text = texts[i++];
            int[] ids = v[0].EnumerateArray().Select(x => x.GetInt32()).ToArray();
            int[] withSpecial = v[1].EnumerateArray().Select(x => x.GetInt32()).ToArray();
            string decoded = v[2].ValueKind == JsonValueKind.Null ? text : v[2].GetString()!;
            string skipped = v[3].ValueKind == JsonValueKind.Null ? decoded : v[3].GetString()!;
            string label = JsonFields.Quote(text.Length > 50 ? text[..50] : text);
            if (!tok.Encode(text, false).SequenceEqual(ids)) failures.Add($"{label}: ids differ");
            if (!tok.Encode(text, true).SequenceEqual(withSpecial)) failures.Add($"{label}: ids_with_special differ");
            if (tok.Decode(ids, false) != decoded) failures.Add($"{label}: decoded {JsonFields.Quote(tok.Decode(ids, false))} != {JsonFields.Quote(decoded)}");
            if (tok.Decode(ids, true) != skipped) failures.Add($"{label}: decoded_skip_special differs");

            var stream = tok.CreateStreamingDecoder(skipSpecialTokens: i % 2 == 0);
            var sb = new System.Text.StringBuilder();
            foreach (int id in withSpecial) sb.Append(stream.Push(id));
            sb.Append(stream.Flush());
            if (sb.ToString() != tok.Decode(withSpecial, i % 2 == 0)) failures.Add($"{label}: streaming differs");
        }
        Assert.True(i > 500, $"only {i} vectors");
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches in {name}:\n" + string.Join("\n", failures.Take(20)));
    }
}
