using System.Runtime.InteropServices;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>Finds the CUDA shared libraries: the driver by its fixed soname, NVRTC and cuBLAS by whatever versioned
/// soname the installed toolkit has (libnvrtc.so.13 for CUDA 13), in an explicit path variable, the loader's
/// search path, $CUDA_PATH and /usr/local/cuda.</summary>
internal static class NativeLibraryLocator
{
    /// <summary>`versions`: the sonames the loader may resolve by itself (default the CUDA toolkit's); `extraDirectories`:
    /// searched after the CUDA ones (NCCL ships in Python packages).</summary>
    public static bool TryLoad(string baseName, string? overrideVariable, out nint handle, out string tried,
        string[]? versions = null, IEnumerable<string>? extraDirectories = null)
    {
        var candidates = new List<string>();
        string? explicitPath = overrideVariable is null ? null : Environment.GetEnvironmentVariable(overrideVariable);
        if (!string.IsNullOrEmpty(explicitPath)) candidates.Add(explicitPath);
        foreach (var dir in SearchDirectories().Concat(extraDirectories ?? []))
        {
            if (!Directory.Exists(dir)) continue;
            try
            {
                candidates.AddRange(Directory.EnumerateFiles(dir, baseName + ".so*")
                    .Where(f => !f.Contains("builtins", StringComparison.Ordinal) && !f.Contains("alt", StringComparison.Ordinal))
                    .OrderByDescending(f => f.Length).ThenByDescending(f => f, StringComparer.Ordinal));
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        // sonames the loader resolves by itself (LD_LIBRARY_PATH, ldconfig cache)
        foreach (var v in versions ?? ["13", "12", "11.2"]) candidates.Add($"{baseName}.so.{v}");
        candidates.Add(baseName + ".so");
        foreach (var c in candidates.Distinct())
            if (NativeLibrary.TryLoad(c, out handle))
            {
                tried = c;
                return true;
            }
        handle = 0;
        tried = string.Join(", ", candidates.Distinct().Take(6));
        return false;
    }

    private static IEnumerable<string> SearchDirectories()
    {
        foreach (var v in new[] { "LD_LIBRARY_PATH" })
            foreach (var d in (Environment.GetEnvironmentVariable(v) ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
                yield return d;
        var cudaPath = Environment.GetEnvironmentVariable("CUDA_PATH");
        if (!string.IsNullOrEmpty(cudaPath))
        {
            yield return Path.Combine(cudaPath, "lib64");
            yield return Path.Combine(cudaPath, "lib");
        }
        yield return "/usr/local/cuda/lib64";
        yield return "/usr/local/cuda/targets/x86_64-linux/lib";
        yield return "/usr/local/cuda/targets/sbsa-linux/lib";
    }
}
