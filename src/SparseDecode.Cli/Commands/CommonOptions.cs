using System.CommandLine;
using SparseDecode.Model;

namespace SparseDecode.Cli.Commands;

internal static class CommonOptions
{
    public static Option<string?> Model() => new("--model", "-m")
    {
        Description = "Model directory in the Hugging Face layout (config.json, *.safetensors, tokenizer.json). Default: the bundled model.",
    };

    public static Option<string> CacheType() => new("--kv-type")
    {
        Description = "KV cache element type: f32, f16 or bf16.",
        DefaultValueFactory = _ => "f32",
    };

    public static DType ParseCacheType(string text) => DTypeExtensions.Parse(text);
}
