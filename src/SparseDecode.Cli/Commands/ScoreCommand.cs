using SparseDecode.Backends;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SparseDecode.Cuda;
using SparseDecode.Engine;
using SparseDecode.Tokenization;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`score`: per-token log-probabilities under dense attention; entry i is log p(token i+1 | tokens 0..i).</summary>
internal static class ScoreCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var ids = new Option<string?>("--token-ids") { Description = "Comma-separated token ids to score." };
        var text = new Option<string?>("--text") { Description = "Text to tokenize (with the tokenizer's special tokens) and score." };
        var json = new Option<bool>("--json") { Description = "Print {\"token_logprobs\": [...]} as JSON." };
        var kv = CommonOptions.CacheType();
        var device = CommonOptions.Device();
        var gpuPrefill = CommonOptions.PrefillPrecision();
        var cmd = new Command("score", "Per-token log-probabilities of a sequence under dense attention.") { model, ids, text, json, kv, device, gpuPrefill };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            if (r.GetValue(ids) is not null && r.GetValue(text) is not null)
                throw new ArgumentException("Give --token-ids or --text, not both.");
            int[] tokens = r.GetValue(ids) is string s ? ParseIds(s)
                : r.GetValue(text) is string t ? Tokenizer.FromDirectory(dir, SparseDecode.Model.ModelConfig.Load(dir)).Encode(t)
                : throw new ArgumentException("Give --token-ids or --text.");
            using var engine = BackendRegistry.Load(dir, CommonOptions.Engine(r, device, kv, capacity: tokens.Length, prefill: gpuPrefill));
            double[] lp = Scorer.TokenLogprobs(engine, tokens);
            if (r.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, double[]> { ["token_logprobs"] = lp }, CliJson.Default.DictionaryStringDoubleArray));
            else
            {
                for (int i = 0; i < lp.Length; i++)
                    Console.WriteLine($"{tokens[i + 1],8} {lp[i].ToString("F6", CultureInfo.InvariantCulture)}");
                double mean = lp.Average();
                Console.WriteLine($"mean log-prob {mean.ToString("F4", CultureInfo.InvariantCulture)}, perplexity {Math.Exp(-mean).ToString("F3", CultureInfo.InvariantCulture)}");
            }
            return 0;
        }));
        return cmd;
    }

    public static int[] ParseIds(string s)
    {
        var parts = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]))
                throw new ArgumentException($"--token-ids: '{parts[i]}' is not an integer token id.");
        return result;
    }
}
