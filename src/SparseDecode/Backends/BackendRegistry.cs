using SparseDecode.Cpu;
using SparseDecode.Engine;

namespace SparseDecode.Backends;

/// <summary>The backends a process can load engines on, by name. The CPU is always there; an application adds the
/// others it ships (the command line and the server register the GPU backend) before loading.</summary>
public static class BackendRegistry
{
    private static readonly Lock s_lock = new();
    private static IBackend[] s_backends = [new CpuBackend()];

    /// <summary>Adds `backend`, or replaces the one registered under its name.</summary>
    public static void Register(IBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        lock (s_lock)
            s_backends = [.. s_backends.Where(b => b.Name != backend.Name), backend];
    }

    /// <summary>The registered backends' names, the CPU's first.</summary>
    public static IReadOnlyList<string> Names => [.. s_backends.Select(b => b.Name)];

    /// <summary>Loads `directory` on the backend `options.Device` names; an unknown name fails with one sentence
    /// listing the registered ones.</summary>
    public static IInferenceEngine Load(string directory, EngineOptions options)
    {
        var backend = Array.Find(s_backends, b => b.Name == options.Device)
            ?? throw new ArgumentException($"Unknown device '{options.Device}'; expected one of: {string.Join(", ", Names)}.");
        return backend.Load(directory, options);
    }
}
