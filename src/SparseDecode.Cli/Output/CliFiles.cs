namespace SparseDecode.Cli.Output;

/// <summary>Reading a file named by an option, with the one-sentence errors a user needs (a directory or a missing
/// path), instead of the runtime's exception.</summary>
internal static class CliFiles
{
    /// <summary>The file's text; "-" reads standard input to its end, as Unix tools do.</summary>
    public static string ReadText(string path, string option)
    {
        if (path == "-") return Console.In.ReadToEnd();
        if (Directory.Exists(path)) throw new ArgumentException($"{option} {path} is a directory; give a file.");
        if (!File.Exists(path)) throw new ArgumentException($"{option} {path}: file not found.");
        return File.ReadAllText(path);
    }
}
