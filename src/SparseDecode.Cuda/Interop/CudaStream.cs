using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

using static SparseDecode.Cuda.Interop.CudaDriver;

namespace SparseDecode.Cuda.Interop;

/// <summary>A non-blocking stream: where kernels are queued, timed with events and captured into graphs.</summary>
internal sealed unsafe class CudaStream : IDisposable
{
    private readonly CudaDevice _device;
    public nint Handle { get; private set; }

    public CudaStream(CudaDevice device)
    {
        _device = device;
        device.MakeCurrent();
        nint s;
        Check(cuStreamCreate(&s, StreamNonBlocking), "cuStreamCreate");
        Handle = s;
    }

    public void Synchronize() => Check(cuStreamSynchronize(Handle), "cuStreamSynchronize");

    public void CopyAsync(DeviceBuffer destination, DeviceBuffer source, long bytes) =>
        Check(cuMemcpyDtoDAsync(destination.Pointer, source.Pointer, (nuint)bytes, Handle), "cuMemcpyDtoDAsync");

    /// <summary>Records what `enqueue` queues on this stream into an executable graph (nothing runs yet).</summary>
    /// <summary>Copies `bytes` between two device addresses in stream order.</summary>
    public void CopyAsync(ulong destination, ulong source, long bytes) =>
        Check(cuMemcpyDtoDAsync(destination, source, (nuint)bytes, Handle), "cuMemcpyDtoDAsync");

    public CudaGraph Capture(Action enqueue)
    {
        _device.MakeCurrent();
        Check(cuStreamBeginCapture(Handle, CaptureModeThreadLocal), "cuStreamBeginCapture");
        nint graph = 0;
        try
        {
            enqueue();
        }
        finally
        {
            int end = cuStreamEndCapture(Handle, &graph);
            if (end != Success && graph == 0) Check(end, "cuStreamEndCapture");
        }
        nint exec;
        nuint nodes = 0;
        try
        {
            Check(cuGraphGetNodes(graph, null, &nodes), "cuGraphGetNodes");
            Check(cuGraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
        }
        finally
        {
            cuGraphDestroy(graph);
        }
        return new CudaGraph(exec, (int)nodes);
    }

    public void Dispose()
    {
        if (Handle == 0) return;
        _device.MakeCurrent();
        cuStreamDestroy(Handle);
        Handle = 0;
    }
}

/// <summary>An instantiated CUDA graph: one launch replays every captured kernel back to back.</summary>
internal sealed unsafe class CudaGraph : IDisposable
{
    private nint _exec;

    internal CudaGraph(nint exec, int nodes)
    {
        _exec = exec;
        Nodes = nodes;
    }

    /// <summary>Operations captured (kernel launches, copies and fills): what one replay runs back to back.</summary>
    public int Nodes { get; }

    public void Launch(CudaStream stream) => Check(cuGraphLaunch(_exec, stream.Handle), "cuGraphLaunch");

    public void Dispose()
    {
        if (_exec == 0) return;
        cuGraphExecDestroy(_exec);
        _exec = 0;
    }
}

/// <summary>A pair of events around work on a stream: device time in milliseconds.</summary>
internal sealed unsafe class CudaTimer : IDisposable
{
    private nint _start, _stop;

    public CudaTimer(CudaDevice device)
    {
        device.MakeCurrent();
        nint a, b;
        Check(cuEventCreate(&a, 0), "cuEventCreate");
        Check(cuEventCreate(&b, 0), "cuEventCreate");
        _start = a;
        _stop = b;
    }

    public void Start(CudaStream s) => Check(cuEventRecord(_start, s.Handle), "cuEventRecord");
    public void Stop(CudaStream s) => Check(cuEventRecord(_stop, s.Handle), "cuEventRecord");

    /// <summary>Median milliseconds of `reps` replays of the graph after two warm-up replays; `spread` is the
    /// slowest over the fastest, minus one.</summary>
    public double MedianReplay(CudaGraph graph, CudaStream s, int reps, out double spread)
    {
        graph.Launch(s);
        graph.Launch(s);
        s.Synchronize();
        var times = new double[Math.Max(1, reps)];
        for (int r = 0; r < times.Length; r++)
        {
            Start(s);
            graph.Launch(s);
            Stop(s);
            times[r] = ElapsedMilliseconds();
        }
        Array.Sort(times);
        spread = times[^1] / times[0] - 1;
        return times[times.Length / 2];
    }

    public double ElapsedMilliseconds()
    {
        Check(cuEventSynchronize(_stop), "cuEventSynchronize");
        float ms;
        Check(cuEventElapsedTime(&ms, _start, _stop), "cuEventElapsedTime");
        return ms;
    }

    public void Dispose()
    {
        if (_start != 0) cuEventDestroy(_start);
        if (_stop != 0) cuEventDestroy(_stop);
        _start = _stop = 0;
    }
}
