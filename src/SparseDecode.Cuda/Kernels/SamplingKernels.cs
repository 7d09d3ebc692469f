using System.Runtime.InteropServices;
using SparseDecode.Cuda.Interop;
using SparseDecode.Engine;

namespace SparseDecode.Cuda.Kernels;

/// <summary>Host side of Cuda/Kernels/sampling.cu: each row's next token drawn from the logits a step left on the
/// device, as <see cref="Sampler"/> draws on the host, so that only token ids come back. One block per row.</summary>
internal sealed class SamplingKernels : IDisposable
{
    public const string SourceFile = "sampling.cu";
    public static readonly string[] KernelNames = ["sample_rows"];
    public const int Threads = 1024;

    /// <summary>One row's draw as the kernel reads it (sampling.cu's RowDraw).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct RowDraw
    {
        /// <summary>0: not drawn; 1: greedy; 2: sampled.</summary>
        public int Mode;
        public float Temperature;
        public float TopP;
        public int TopK;
        public double Uniform;
    }

    private readonly CudaModule _module;
    private readonly DeviceBuffer _draws, _tokens;
    private readonly RowDraw[] _host;

    public int Rows { get; }

    /// <summary>Kernels and buffers for steps of up to `rows` rows.</summary>
    public SamplingKernels(CudaDevice device, int rows)
    {
        Rows = rows;
        _module = CudaModule.Load(device, SourceFile);
        _ = _module[KernelNames[0]];
        _draws = device.Allocate((long)rows * Marshal.SizeOf<RowDraw>());
        _tokens = device.Allocate(rows * 4L);
        _host = new RowDraw[rows];
    }

    /// <summary>Row r's draw: none (null sampler), greedy, or sampled with the sampler's next uniform number (taken
    /// here, one per sampled row, as <see cref="Sampler.Next"/> would take it).</summary>
    public void Set(int row, Sampler? sampler)
    {
        if (sampler is null)
        {
            _host[row] = default;
            return;
        }
        var o = sampler.Options;
        _host[row] = sampler.IsGreedy
            ? new RowDraw { Mode = 1 }
            : new RowDraw { Mode = 2, Temperature = o.Temperature, TopP = o.TopP, TopK = o.TopK, Uniform = sampler.Uniform() };
    }

    /// <summary>Queues the draws of rows [0, rows) set by <see cref="Set"/> over `logits` [rows][vocab], then waits
    /// and copies the tokens into `tokens` (−1: not drawn, or logits not finite).</summary>
    public void Draw(DeviceBuffer logits, int vocab, int rows, Span<int> tokens, CudaStream stream)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, Rows);
        _draws.UploadAsync<RowDraw>(_host.AsSpan(0, rows), stream);
        var a = new KernelArgs();
        a.Add(logits); a.Add(vocab); a.Add(_draws); a.Add(_tokens);
        _module[KernelNames[0]].Launch((rows, 1, 1), Threads, stream, ref a);
        stream.Synchronize();
        _tokens.Download(tokens[..rows]);
    }

    public void Dispose()
    {
        _draws.Dispose();
        _tokens.Dispose();
        _module.Dispose();
    }
}
