using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>The .cu files embedded in the library (Cuda/Kernels/*.cu) and where their compiled forms are cached:
/// $SPARSEDECODE_KERNEL_CACHE, else $XDG_CACHE_HOME/sparsedecode/kernels, else ~/.cache/sparsedecode/kernels.
/// The file name carries a hash of everything the binary depends on (source, options, architecture, compiler).</summary>
internal static class KernelSource
{
    public const string ResourcePrefix = "SparseDecode.Cuda.Kernels.";

    public static IReadOnlyList<string> Names() =>
        typeof(KernelSource).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".cu", StringComparison.Ordinal))
            .Select(n => n[ResourcePrefix.Length..]).Order(StringComparer.Ordinal).ToArray();

    /// <summary>The embedded headers (*.cuh) by file name: every kernel source may include them.</summary>
    public static IReadOnlyList<(string Name, string Text)> Headers() =>
        typeof(KernelSource).Assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal) && n.EndsWith(".cuh", StringComparison.Ordinal))
            .Select(n => n[ResourcePrefix.Length..]).Order(StringComparer.Ordinal).Select(n => (n, Read(n))).ToArray();

    public static string Read(string fileName) => Read(fileName, typeof(KernelSource).Assembly, ResourcePrefix);

    /// <summary>A kernel source embedded in another assembly (e.g. the diagnostics') under `prefix`.</summary>
    public static string Read(string fileName, Assembly assembly, string prefix)
    {
        using var s = assembly.GetManifestResourceStream(prefix + fileName)
            ?? throw new CudaException($"The kernel source {fileName} is not embedded in {assembly.GetName().Name}.");
        using var r = new StreamReader(s, Encoding.UTF8);
        return r.ReadToEnd();
    }

    public static string CacheDirectory()
    {
        var explicitDir = Environment.GetEnvironmentVariable("SPARSEDECODE_KERNEL_CACHE");
        if (!string.IsNullOrEmpty(explicitDir)) return explicitDir;
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrEmpty(xdg) ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "sparsedecode", "kernels");
    }

    /// <summary>Cache file name: `name-arch-hash16.cubin`, the hash over source, options, arch and compiler version.</summary>
    public static string CacheFileName(string fileName, string source, IReadOnlyList<string> options, string architecture, string compiler)
    {
        var text = new StringBuilder().Append(source).Append('\0').AppendJoin('\0', options).Append('\0')
            .Append(architecture).Append('\0').Append(compiler).ToString();
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..16];
        return $"{Path.GetFileNameWithoutExtension(fileName)}-{architecture}-{hash}.cubin";
    }
}
