using System.Text;
using System.Text.Json.Nodes;
using CsCheck;

namespace SparseDecode.Tests.Properties;

/// <summary>Structural corruption of a JSON seed: up to three nodes anywhere in it replaced by a value of another
/// type or range. It reaches the validation behind the JSON parser, which random bytes rarely get past.</summary>
internal static class JsonMutation
{
    private static readonly JsonNode?[] Replacements =
    [
        null, 0, -1, 2147483647, -2147483648, 9223372036854775807L, 1e300, -1e-300, 0.5, "", "x", "(a|aa)+$", "\u00e9\ud83d\ude00", true,
        new JsonArray(), new JsonObject(), new JsonArray(1, "a"), new JsonObject { ["type"] = "Sequence" },
    ];

    /// <summary>Generates mutants of the seeds (files in the fuzz corpus directory `corpus`) as UTF-8 bytes.</summary>
    public static Gen<byte[]> Of(string corpus) => Gen.Select(Gen.Int[0, int.MaxValue], Gen.Int[0, int.MaxValue], Gen.Int[0, Replacements.Length - 1], Gen.Int[1, 3])
        .Select((which, at, with, count) =>
        {
            string[] seeds = Seeds(corpus);
            var root = JsonNode.Parse(seeds[which % seeds.Length])!;
            for (int k = 0; k < count; k++)
            {
                var nodes = Nodes(root).Where(n => n.Parent is not null).ToList();
                if (nodes.Count == 0) break;
                var target = nodes[(int)((at + (long)k * 7919) % nodes.Count)];
                var replacement = Replacements[(with + k) % Replacements.Length]?.DeepClone();
                if (target.Parent is JsonObject o) o[target.GetPropertyName()] = replacement;
                else if (target.Parent is JsonArray a) a[target.GetElementIndex()] = replacement;
            }
            return Encoding.UTF8.GetBytes(root.ToJsonString());
        });

    private static readonly Dictionary<string, string[]> Cache = [];

    private static string[] Seeds(string corpus)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(corpus, out var seeds))
            {
                string dir = Path.Combine(AppContext.BaseDirectory, "corpus", corpus);
                Cache[corpus] = seeds = [.. Directory.GetFiles(dir).Order(StringComparer.Ordinal).Select(File.ReadAllText).Where(Materializes)];
            }
            return seeds;
        }
    }

    // Seeds that are bad on purpose (a lone surrogate) cannot become a JsonNode tree; they are mutated as bytes.
    private static bool Materializes(string text)
    {
        try
        {
            return JsonNode.Parse(text) is JsonObject o && o.ToJsonString().Length > 0;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException)
        {
            return false;
        }
    }

    private static IEnumerable<JsonNode> Nodes(JsonNode node)
    {
        yield return node;
        var children = node switch
        {
            JsonObject o => o.Select(kv => kv.Value),
            JsonArray a => a.AsEnumerable(),
            _ => [],
        };
        foreach (var c in children)
            if (c is not null)
                foreach (var n in Nodes(c)) yield return n;
    }
}
