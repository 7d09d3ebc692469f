using System.Text.Json;

namespace SparseDecode.Tests;

/// <summary>Paths of the committed fixtures (copied beside the test assembly) and of the bundled model.</summary>
public static class Fixtures
{
    public static string Root => Path.Combine(AppContext.BaseDirectory, "Fixtures");

    public static string Model(string name) => Path.Combine(Root, "models", name);

    public static IEnumerable<string> ModelNames =>
        Directory.Exists(Path.Combine(Root, "models"))
            ? Directory.GetDirectories(Path.Combine(Root, "models")).Select(Path.GetFileName).OfType<string>().Order()
            : [];

    public static string BundledModel
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "models", global::SparseDecode.Engine.ModelLocator.DefaultModelName);
                if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
            }
            throw new DirectoryNotFoundException("The bundled model was not found above the test directory.");
        }
    }

    public sealed record Reference(int[] TokenIds, double[] TokenLogprobs);

    public static Reference LoadReference(string modelDir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(modelDir, "reference.json")));
        var root = doc.RootElement;
        return new Reference(
            root.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("token_logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray());
    }

    /// <summary>A scratch directory removed when disposed.</summary>
    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "sparsedecode-test-" + Guid.NewGuid().ToString("N"));
        public TempDir() => Directory.CreateDirectory(Path);
        public string File(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
    }
}
