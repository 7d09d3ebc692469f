using System.CommandLine;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Cpu;

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
        DefaultValueFactory = _ => CpuTopology.PhysicalCores,
        Recursive = true,
        // a value that is not a number is reported by the parser itself
        Validators = { r => { if (r.Tokens.Count == 1 && int.TryParse(r.Tokens[0].Value, out int n) && n < 1) r.AddError("--threads must be at least 1."); } },
    };

    public static Option<string> CacheType() => new("--kv-type")
    {
        Description = "KV cache element type on the CPU: f32, f16, bf16 or q8 (8-bit entries with a scale per 32: a quarter of f32's memory; " +
                      "heads a multiple of 32 wide). The GPU's cache is bf16.",
        DefaultValueFactory = _ => "f32",
    };

    public static Option<string> Device() => new("--device")
    {
        Description = "Where the model runs: cpu, or cuda (also written gpu: the whole step on an NVIDIA GPU, bf16 weights and KV cache).",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>"cpu" or "cuda" ("gpu" is taken for cuda); anything else is refused with one line.</summary>
    public static string ParseDevice(string text) => text.ToLowerInvariant() switch
    {
        "cpu" => "cpu",
        "cuda" or "gpu" => "cuda",
        _ => throw new ArgumentException($"Unknown device '{text}': expected cpu or cuda."),
    };

    public static Option<string> PrefillPrecision() => new("--gpu-prefill")
    {
        Description = "GPU prefill operands: split (f32-accurate, matches the CPU engine) or bf16 (rounded once, as transformers does; about 2× faster).",
        DefaultValueFactory = _ => "split",
    };

    public static Option<string> DecodePrecision() => new("--gpu-decode")
    {
        Description = "GPU decode steps' weight-product operands: split (f32-accurate, matches the CPU engine) or bf16 (rounded once, as transformers does; a third of the tensor-core work in wide steps).",
        DefaultValueFactory = _ => "split",
    };

    public static SparseDecode.Engine.ProductPrecision ParsePrefillPrecision(string text) => ParsePrecision(text, "--gpu-prefill");

    public static SparseDecode.Engine.ProductPrecision ParsePrecision(string text, string option) => text.ToLowerInvariant() switch
    {
        "split" => SparseDecode.Engine.ProductPrecision.Split,
        "bf16" => SparseDecode.Engine.ProductPrecision.Bf16,
        _ => throw new ArgumentException($"Unknown {option} '{text}': expected split or bf16."),
    };

    /// <summary>The engine --device, --kv-type, --gpu-prefill and --gpu-decode ask for; on the GPU, `sequences` cache
    /// slots of `capacity` positions (default: the model's context).</summary>
    public static EngineOptions Engine(ParseResult r, Option<string> device, Option<string>? kv, int? capacity = null, int sequences = 1,
        Option<string>? prefill = null, Option<string>? decode = null)
    {
        CheckGpuPrecision(r, device, prefill);
        CheckGpuPrecision(r, device, decode);
        CheckGpuCacheType(r, device, kv);
        return new()
        {
            PrefillPrecision = prefill is null ? SparseDecode.Engine.ProductPrecision.Split : ParsePrefillPrecision(r.GetValue(prefill)!),
            DecodePrecision = decode is null ? SparseDecode.Engine.ProductPrecision.Split : ParsePrecision(r.GetValue(decode)!, "--gpu-decode"),
            Device = ParseDevice(r.GetValue(device)!),
            CacheType = kv is null ? DType.F32 : ParseCacheType(r.GetValue(kv)!),
            Capacity = capacity,
            Sequences = sequences,
        };
    }

    /// <summary>--gpu-prefill or --gpu-decode given with the CPU would be ignored; refused instead.</summary>
    public static void CheckGpuPrecision(ParseResult r, Option<string> device, Option<string>? precision)
    {
        if (precision is not null && r.GetResult(precision) is { Implicit: false } && ParseDevice(r.GetValue(device)!) != "cuda")
            throw new ArgumentException($"{precision.Name} sets the GPU's {(precision.Name == "--gpu-decode" ? "decode steps" : "prefill")}; it needs --device cuda.");
    }

    public static DType ParseCacheType(string text) => DTypeExtensions.Parse(text);

    /// <summary>The GPU keeps its cache in bf16: another --kv-type given with it would be ignored; refused instead.</summary>
    public static void CheckGpuCacheType(ParseResult r, Option<string> device, Option<string>? kv)
    {
        if (kv is not null && r.GetResult(kv) is { Implicit: false } && ParseDevice(r.GetValue(device)!) == "cuda"
            && ParseCacheType(r.GetValue(kv)!) != DType.BF16)
            throw new ArgumentException($"--kv-type {r.GetValue(kv)} is for the CPU; the GPU's KV cache is bf16.");
    }
}
