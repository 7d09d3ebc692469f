using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using static SparseDecode.Cuda.Interop.Nccl;

namespace SparseDecode.Cuda.Interop;

/// <summary>An NCCL failure: the call, its status and NCCL's own description (with its last error message).</summary>
public sealed class NcclException : CudaException
{
    public NcclException(string call, int status, string description) : base(call, status, description) { }
    public NcclException(string message) : base(message) { }
}

/// <summary>The element types the all-reduce sums.</summary>
internal enum NcclElement
{
    Float32,
    Bfloat16,
}

/// <summary>One rank's NCCL communicator over the GPU of this process. Collectives are queued on a CUDA stream and
/// return at once, so they can be captured into the step's CUDA graph like a kernel. NVLink multicast (NVLS) is
/// turned off before NCCL starts (<see cref="Nccl.DisableNvlinkMulticast"/>).</summary>
internal sealed unsafe class NcclCommunicator : IDisposable
{
    private readonly CudaDevice _device;
    private nint _comm;

    public int Rank { get; }
    public int Ranks { get; }

    private NcclCommunicator(CudaDevice device, nint comm, int rank, int ranks)
    {
        _device = device;
        _comm = comm;
        Rank = rank;
        Ranks = ranks;
    }

    /// <summary>Null when NCCL can be loaded, else the one-sentence reason it cannot.</summary>
    public static string? Probe() => Load();

    /// <summary>"2.21.5" of the loaded library, and where it was found.</summary>
    public static (string Version, string Path) Library()
    {
        Require();
        int v;
        Check(ncclGetVersion(&v), "ncclGetVersion");
        // NCCL ≥ 2.9 encodes major·10000 + minor·100 + patch
        return ($"{v / 10000}.{v / 100 % 100}.{v % 100}", LibraryPath);
    }

    /// <summary>Rank 0 makes the id (it opens NCCL's bootstrap socket) and hands it to the other ranks.</summary>
    public static NcclUniqueId CreateId()
    {
        Require();
        NcclUniqueId id;
        Check(ncclGetUniqueId(&id), "ncclGetUniqueId");
        return id;
    }

    /// <summary>Joins the communicator of `ranks` processes as `rank`, on `device` (made current first); blocks until
    /// every rank has joined.</summary>
    public static NcclCommunicator Join(CudaDevice device, NcclUniqueId id, int ranks, int rank)
    {
        if (ranks < 1 || rank < 0 || rank >= ranks) throw new ArgumentException($"Rank {rank} is not one of 0..{ranks - 1}.");
        Require();
        device.MakeCurrent();
        nint comm;
        Check(ncclCommInitRank(&comm, ranks, id, rank), "ncclCommInitRank");
        return new NcclCommunicator(device, comm, rank, ranks);
    }

    /// <summary>Sums `count` elements of every rank's `send` into every rank's `receive` (the same buffer is fine:
    /// in place), queued on `stream`.</summary>
    public void AllReduceSum(DeviceBuffer send, DeviceBuffer receive, long count, NcclElement type, CudaStream stream)
    {
        long bytes = count * Size(type);
        if (count < 0 || bytes > send.Bytes || bytes > receive.Bytes)
            throw new ArgumentException($"An all-reduce of {count} {type} elements does not fit buffers of {send.Bytes} and {receive.Bytes} bytes.");
        _device.MakeCurrent();
        Check(ncclAllReduce(send.Pointer, receive.Pointer, (nuint)count, Code(type), Nccl.Sum, _comm, stream.Handle), "ncclAllReduce", _comm);
    }

    /// <summary>Every rank's `count` elements of `send`, rank after rank, into every rank's `receive` (Ranks × count
    /// elements), queued on `stream`: the vocabulary slices of the logits.</summary>
    public void AllGather(DeviceBuffer send, DeviceBuffer receive, long count, NcclElement type, CudaStream stream)
    {
        long bytes = count * Size(type);
        if (count < 0 || bytes > send.Bytes || bytes * Ranks > receive.Bytes)
            throw new ArgumentException($"An all-gather of {Ranks} × {count} {type} elements does not fit buffers of {send.Bytes} and {receive.Bytes} bytes.");
        _device.MakeCurrent();
        Check(ncclAllGather(send.Pointer, receive.Pointer, (nuint)count, Code(type), _comm, stream.Handle), "ncclAllGather", _comm);
    }

    public static int Size(NcclElement type) => type == NcclElement.Float32 ? 4 : 2;

    private static int Code(NcclElement type) => type == NcclElement.Float32 ? Float32 : Bfloat16;

    private static void Require()
    {
        if (Load() is string reason) throw new NcclException(reason);
    }

    public void Dispose()
    {
        if (_comm == 0) return;
        _device.MakeCurrent();
        Check(ncclCommDestroy(_comm), "ncclCommDestroy");
        _comm = 0;
    }
}
