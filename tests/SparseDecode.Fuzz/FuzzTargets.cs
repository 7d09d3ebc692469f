using System.Text;
using SparseDecode.Evaluation;
using SparseDecode.Model;
using SparseDecode.Server.Protocol;
using SparseDecode.Tokenization;
using SparseDecode.Cpu;

namespace SparseDecode.Fuzz;

/// <summary>One entry point per parser that reads untrusted bytes. Each swallows exactly the refusal its parser
/// documents (one-sentence format exceptions, 4xx API errors) and checks what an accepted input promises; any
/// other exception escapes, and that is what a fuzzer reports as a crash.</summary>
public static class FuzzTargets
{
    public delegate void Target(ReadOnlySpan<byte> data);

    public static IReadOnlyDictionary<string, Target> All { get; } = new Dictionary<string, Target>
    {
        ["safetensors"] = Safetensors,
        ["config"] = Config,
        ["tokenizer"] = TokenizerFile,
        ["request"] = Request,
        ["results"] = Results,
    };

    public static void Safetensors(ReadOnlySpan<byte> data)
    {
        try
        {
            SafetensorsFile.Validate(data, "fuzz.safetensors");
        }
        catch (ModelFormatException)
        {
        }
    }

    public static void Config(ReadOnlySpan<byte> data)
    {
        ModelConfig c;
        try
        {
            c = ModelConfig.FromJson(data.ToArray(), "config.json");
        }
        catch (ModelFormatException)
        {
            return;
        }
        // Accepted: every value that sizes memory is positive and within its bound, and the floats are usable.
        Require(c.NumLayers is > 0 and <= ModelConfig.MaxLayers && c.HiddenSize is > 0 and <= ModelConfig.MaxHidden
            && c.NumHeads is > 0 and <= ModelConfig.MaxHeads && c.NumKvHeads > 0 && c.NumHeads % c.NumKvHeads == 0
            && c.HeadDim is > 0 and <= ModelConfig.MaxHeadDim && c.HeadDim % 2 == 0 && c.VocabSize is > 0 and <= ModelConfig.MaxVocab
            && c.MaxPositions is > 0 and <= ModelConfig.MaxPositionsLimit && c.RmsNormEps is > 0 and < 1
            && c.Rope.Theta > 0 && double.IsFinite(c.Rope.Theta), "config accepted with an out-of-range value");
    }

    private static readonly string[] Texts = ["def f(x):\n    return x + 1", "héllo wörld 😀 <s> </s>", "  \t\n", "aaaaaaaaaaaaaaaaaaaaaaaaab"];

    public static void TokenizerFile(ReadOnlySpan<byte> data)
    {
        Tokenizer t;
        try
        {
            t = Tokenizer.FromJson(data.ToArray(), "tokenizer.json");
        }
        catch (TokenizerFormatException)
        {
            return;
        }
        foreach (string text in Texts)
        {
            int[] ids;
            try
            {
                ids = t.Encode(text);
            }
            catch (TokenizerTimeoutException)
            {
                continue;
            }
            foreach (int id in ids) Require(id >= 0 && id < t.VocabSize, "encoding produced an id outside the vocabulary");
            t.Decode(ids);
        }
    }

    public static void Request(ReadOnlySpan<byte> data)
    {
        var body = data.ToArray();
        foreach (bool chat in (bool[])[false, true])
        {
            try
            {
                var p = chat ? RequestParser.ParseChat(body, 4096).Parameters : RequestParser.ParseCompletion(body, 4096).Parameters;
                Require(p.Temperature is >= 0 and <= 2 && p.TopP is > 0 and <= 1 && p.TopK >= 0
                    && p.MaxTokens is null or (>= 1 and <= 4096), "request accepted with an out-of-range value");
            }
            catch (ApiException e) when (e.Status is >= 400 and < 500)
            {
            }
        }
    }

    public static void Results(ReadOnlySpan<byte> data)
    {
        foreach (string line in Encoding.UTF8.GetString(data).Split('\n'))
        {
            if (ResultStore.Read(line, out string? reason) is not { } cell)
            {
                Require(reason is not null, "a line was refused without a reason");
                continue;
            }
            string again = System.Text.Json.JsonSerializer.Serialize(cell, EvalJson.Default.CellResult);
            Require(ResultStore.Read(again, out _)?.Key == cell.Key, "a cell did not survive writing and reading back");
        }
    }

    private static void Require(bool condition, string what)
    {
        if (!condition) throw new InvalidOperationException("Fuzz invariant broken: " + what + ".");
    }

    /// <summary>Runs a target over every seed and, for each, `mutations` deterministic mutants (bit flips, byte
    /// overwrites, insertions, truncations, splices with another seed): the smoke run CI does in seconds.</summary>
    public static int Smoke(Target target, IReadOnlyList<byte[]> seeds, int mutations, int seed = 1)
    {
        var random = new Random(seed);
        int runs = 0;
        foreach (var s in seeds)
        {
            target(s);
            runs++;
            for (int i = 0; i < mutations; i++, runs++) target(Mutate(s, seeds[random.Next(seeds.Count)], random));
        }
        return runs;
    }

    public static byte[] Mutate(byte[] input, byte[] other, Random random)
    {
        var b = new List<byte>(input);
        int edits = 1 + random.Next(4);
        for (int e = 0; e < edits; e++)
        {
            int at = b.Count == 0 ? 0 : random.Next(b.Count);
            switch (random.Next(6))
            {
                case 0 when b.Count > 0: b[at] ^= (byte)(1 << random.Next(8)); break;
                case 1 when b.Count > 0: b[at] = Interesting[random.Next(Interesting.Length)]; break;
                case 2: b.InsertRange(at, Tokens[random.Next(Tokens.Length)]); break;
                case 3 when b.Count > 0: b.RemoveRange(at, Math.Min(b.Count - at, 1 + random.Next(16))); break;
                case 4: b.RemoveRange(at, b.Count - at); b.AddRange(other.Skip(other.Length == 0 ? 0 : random.Next(other.Length))); break;
                default: if (b.Count > 0) b.Insert(at, (byte)random.Next(256)); break;
            }
        }
        return [.. b];
    }

    private static readonly byte[] Interesting = [0, 0xFF, 0x7F, 0x80, (byte)'"', (byte)'\\', (byte)'{', (byte)'}', (byte)'[', (byte)'-', (byte)'9', 0xC3, 0xED];

    // JSON fragments that reach deeper than random bytes: extreme numbers, escapes, nesting, special values.
    private static readonly byte[][] Tokens = [.. new[]
    {
        "-1", "0", "1e400", "2147483648", "9223372036854775808", "-0.0", "NaN", "null", "true", "[]", "{}", "\"\"", "\"\\ud800\"",
        "\"\\u0000\"", "[[[[[[[[", "]]]]", ",", ":", "\"x\":", "1.7976931348623157e308", "4.9e-324", "\"%\"", "\"NaN%\"",
    }.Select(Encoding.UTF8.GetBytes)];
}
