using System.CommandLine;
using SparseDecode.Model;

namespace SparseDecode.Cli.Commands;

internal static class CommonOptions
{
    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = "Model directory in the Hugging Face layout (config.json, *.safetensors, tokenizer.json). Default: the bundled model.",
    };

    /// <summary>--threads, on the root command and (recursively) on every command.</summary>
    public static Option<int> Threads() => new("--threads", "-t")
    {
        Description = "CPU threads the engine computes on. Default: the physical cores.",
        DefaultValueFactory = _ => Parallelism.CpuTopology.PhysicalCores,
        Recursive = true,
        // a value that is not a number is reported by the parser itself
        Validators = { r => { if (r.Tokens.Count == 1 && int.TryParse(r.Tokens[0].Value, out int n) && n < 1) r.AddError("--threads must be at least 1."); } },
    };

    public static Option<string> CacheType() => new("--kv-type")
    {
        Description = "KV cache element type: f32, f16 or bf16.",
        DefaultValueFactory = _ => "f32",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "Where the model runs: cpu, or cuda (the whole step on an NVIDIA GPU: bf16 weights and KV cache).",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>True for cuda, false for cpu; anything else is refused with one line.</summary>
    public static bool ParseDevice(string text) => text.ToLowerInvariant() switch
    {
        "cpu" => false,
        "cuda" or "gpu" => true,
        _ => throw new ArgumentException($"Unknown device '{text}': expected cpu or cuda."),
    };

    public static DType ParseCacheType(string text) => DTypeExtensions.Parse(text);
}
