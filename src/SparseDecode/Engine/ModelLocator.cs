namespace SparseDecode.Engine;

/// <summary>Finds the bundled default model when no --model is given: $SPARSEDECODE_MODEL, then models/ beside
/// the program (the build copies it there), then models/ in the current directory or any parent.</summary>
public static class ModelLocator
{
    public const string DefaultModelName = "sparse-code-16m";

    public static string Resolve(string? model)
    {
        if (!string.IsNullOrEmpty(model))
        {
            // checked here, before any command opens a file of it, so that every command says the same
            if (File.Exists(model)) throw new Model.ModelFormatException($"{model}: is a file; --model takes a model directory (config.json, tokenizer.json, *.safetensors).");
            if (!Directory.Exists(model)) throw new Model.ModelFormatException($"{model}: model directory not found.");
            return model;
        }
        string? env = Environment.GetEnvironmentVariable("SPARSEDECODE_MODEL");
        if (!string.IsNullOrEmpty(env)) return env;
        string beside = Path.Combine(AppContext.BaseDirectory, "models", DefaultModelName);
        if (File.Exists(Path.Combine(beside, "config.json"))) return beside;
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "models", DefaultModelName);
            if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
        }
        throw new Model.ModelFormatException($"No --model was given and the bundled model models/{DefaultModelName} was not found beside the program or in the current directory's parents.");
    }
}
