using System.Runtime.InteropServices;
using System.Text;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using static SparseDecode.Cuda.Interop.Nvrtc;

namespace SparseDecode.Cuda.Interop;

/// <summary>Compiles an embedded .cu file with NVRTC for the device's own architecture (sm_XY machine code, so
/// nothing is left to the driver's JIT) and keeps the cubin on disk, so a second run loads it without NVRTC.</summary>
internal static unsafe class KernelCompiler
{
    public static readonly IReadOnlyList<string> DefaultOptions = ["--std=c++17", "-default-device", "-DNDEBUG"];

    /// <summary>Returns the cubin for `fileName` and whether it came from the disk cache; `log` gets NVRTC's
    /// messages (warnings included) when it compiled.</summary>
    public static byte[] Compile(string fileName, string architecture, out bool fromCache, out string log, IReadOnlyList<string>? extraOptions = null) =>
        Compile(fileName, KernelSource.Read(fileName), architecture, out fromCache, out log, extraOptions);

    /// <summary>The same for kernel source text kept elsewhere (another assembly's), named `fileName`; it may
    /// include the library's headers.</summary>
    public static byte[] Compile(string fileName, string source, string architecture, out bool fromCache, out string log, IReadOnlyList<string>? extraOptions = null)
    {
        var headers = KernelSource.Headers();
        var options = new List<string>(DefaultOptions) { $"--gpu-architecture={architecture}" };
        if (extraOptions != null) options.AddRange(extraOptions);

        var reason = Load();
        // With no NVRTC a cached binary of the same source may still serve; its name needs the compiler version,
        // so look for any cached build of this source hash prefix without it only when NVRTC is missing.
        if (reason != null) throw new CudaUnavailableException(reason);
        var (major, minor) = Nvrtc.Version();
        string dir = KernelSource.CacheDirectory();
        // the headers' text is part of what the binary depends on
        string hashed = string.Concat(headers.Select(h => h.Name + "\0" + h.Text + "\0")) + source;
        string path = Path.Combine(dir, KernelSource.CacheFileName(fileName, hashed, options, architecture, $"nvrtc {major}.{minor}"));
        if (File.Exists(path))
        {
            try
            {
                fromCache = true;
                log = "";
                return File.ReadAllBytes(path);
            }
            catch (IOException) { }
        }
        fromCache = false;
        var cubin = CompileSource(source, fileName, headers, options, out log);
        try
        {
            Directory.CreateDirectory(dir);
            string tmp = path + "." + Environment.ProcessId + ".tmp";
            File.WriteAllBytes(tmp, cubin);
            File.Move(tmp, path, overwrite: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return cubin;
    }

    private static byte[] CompileSource(string source, string name, IReadOnlyList<(string Name, string Text)> headers,
        IReadOnlyList<string> options, out string log)
    {
        nint prog;
        var src = Utf8(source);
        var nm = Utf8(name);
        var texts = headers.Select(h => GCHandle.Alloc(Utf8(h.Text), GCHandleType.Pinned)).ToArray();
        var names = headers.Select(h => GCHandle.Alloc(Utf8(h.Name), GCHandleType.Pinned)).ToArray();
        try
        {
            var tp = stackalloc byte*[Math.Max(1, texts.Length)];
            var np = stackalloc byte*[Math.Max(1, names.Length)];
            for (int i = 0; i < texts.Length; i++)
            {
                tp[i] = (byte*)texts[i].AddrOfPinnedObject();
                np[i] = (byte*)names[i].AddrOfPinnedObject();
            }
            fixed (byte* s = src, n = nm)
                Check(nvrtcCreateProgram(&prog, s, n, texts.Length, tp, np), "nvrtcCreateProgram");
        }
        finally
        {
            foreach (var h in texts.Concat(names)) h.Free();
        }
        try
        {
            var opts = options.Select(Utf8).ToArray();
            var handles = opts.Select(o => GCHandle.Alloc(o, GCHandleType.Pinned)).ToArray();
            int status;
            try
            {
                var ptrs = stackalloc byte*[opts.Length];
                for (int i = 0; i < opts.Length; i++) ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
                status = nvrtcCompileProgram(prog, opts.Length, ptrs);
            }
            finally
            {
                foreach (var h in handles) h.Free();
            }
            log = ProgramLog(prog);
            if (status != 0)
                throw new CudaException("nvrtcCompileProgram", status,
                    $"{Marshal.PtrToStringUTF8((nint)nvrtcGetErrorString(status))} compiling {name} with {string.Join(' ', options)}:\n{log}");
            nuint size;
            Check(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
            var cubin = new byte[(int)size];
            fixed (byte* c = cubin) Check(nvrtcGetCUBIN(prog, c), "nvrtcGetCUBIN");
            return cubin;
        }
        finally
        {
            nvrtcDestroyProgram(&prog);
        }
    }

    private static string ProgramLog(nint prog)
    {
        nuint size;
        if (nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* b = buf) nvrtcGetProgramLog(prog, b);
        return Encoding.UTF8.GetString(buf).TrimEnd('\0').Trim();
    }

    private static byte[] Utf8(string s)
    {
        var b = new byte[Encoding.UTF8.GetByteCount(s) + 1];
        Encoding.UTF8.GetBytes(s, b);
        return b;
    }
}
