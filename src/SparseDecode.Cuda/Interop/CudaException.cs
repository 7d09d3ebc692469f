using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda.Interop;

/// <summary>A CUDA driver, NVRTC or kernel failure: the call that failed, its status name and the driver's own
/// description of it.</summary>
public class CudaException : Exception
{
    public string Call { get; }
    public int Status { get; }

    public CudaException(string call, int status, string description)
        : base($"{call} failed: {description}")
    {
        Call = call;
        Status = status;
    }

    public CudaException(string message) : base(message)
    {
        Call = "";
    }
}

/// <summary>No usable CUDA driver or GPU on this machine; the message is one sentence saying which.</summary>
public sealed class CudaUnavailableException(string reason) : CudaException(reason);
