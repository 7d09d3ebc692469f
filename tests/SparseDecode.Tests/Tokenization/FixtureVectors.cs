using System.Text.Json;
using Xunit;

namespace SparseDecode.Tests.Tokenization;

/// <summary>The tokenizer parity fixtures: tokenizer.json plus vectors.json made by Hugging Face `tokenizers`
/// (tools/fixtures/make_fixtures.py), copied beside the test assembly.</summary>
public static class FixtureVectors
{
    public sealed record Vector(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded, string DecodedSkipSpecial);

    public static readonly string[] Names = ["byte-level", "sentencepiece-bpe", "gpt2-bytelevel"];

    public static TheoryData<string> Folders
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (var name in Names) data.Add(name);
            return data;
        }
    }

    public static string Dir(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizers", name);

    public static string TokenizerPath(string name) => Path.Combine(Dir(name), "tokenizer.json");

    public static IReadOnlyList<Vector> Load(string name)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Dir(name), "vectors.json")));
        var list = new List<Vector>();
        foreach (var v in doc.RootElement.EnumerateArray())
        {
            list.Add(new Vector(
                v.GetProperty("text").GetString()!,
                Ints(v.GetProperty("ids")),
                Ints(v.GetProperty("ids_with_special")),
                v.GetProperty("decoded").GetString()!,
                v.GetProperty("decoded_skip_special").GetString()!));
        }
        return list;
    }

    static int[] Ints(JsonElement array)
    {
        var result = new int[array.GetArrayLength()];
        int i = 0;
        foreach (var e in array.EnumerateArray()) result[i++] = e.GetInt32();
        return result;
    }
}
