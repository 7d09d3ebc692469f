using System.CommandLine;
using SparseDecode.Engine;
using SparseDecode.Export;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`export-gguf`: the checkpoint and its tokenizer as one GGUF file, for llama.cpp, Ollama and LLamaSharp.</summary>
internal static class ExportGgufCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var output = new Option<string>("--out", "-o") { Description = "The GGUF file to write.", Required = true };
        var cmd = new Command("export-gguf", "Write the checkpoint (tensors in their stored type) and its tokenizer as a GGUF file that llama.cpp loads.") { model, output };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            string path = r.GetValue(output)!;
            if (Directory.Exists(path)) throw new ArgumentException($"--out {path} is a directory; give a file.");
            string? parent = Path.GetDirectoryName(Path.GetFullPath(path));
            if (parent is not null && !Directory.Exists(parent)) throw new ArgumentException($"--out {path}: directory {parent} does not exist.");
            GgufExport.Write(dir, path);
            Console.Error.WriteLine($"export-gguf: wrote {path} ({new FileInfo(path).Length / 1e6:F1} MB)");
            return 0;
        }));
        return cmd;
    }
}
