using SparseDecode.Cuda;
using SparseDecode.Model;

namespace SparseDecode.Cli.Commands;

/// <summary>A checkpoint loaded onto the GPU for `--device cuda`: device, kernels, weights and the model, disposed
/// together. Opening fails with one sentence when there is no driver or GPU.</summary>
internal sealed class GpuRun : IDisposable
{
    public CudaDevice Device { get; }
    public DecodeKernels DecodeKernels { get; }
    public ModelKernels ModelKernels { get; }
    public GpuWeights Weights { get; }
    public GpuModel Model { get; }

    public GpuRun(string directory, int capacity)
    {
        var config = ModelConfig.Load(directory);
        Device = CudaDevice.Open();
        DecodeKernels = new DecodeKernels(Device);
        ModelKernels = new ModelKernels(Device);
        using var store = WeightStore.Open(directory);
        Weights = GpuWeights.Upload(Device, store, config);
        Model = new GpuModel(DecodeKernels, ModelKernels, Weights, capacity);
    }

    public void Dispose()
    {
        Model.Dispose();
        Weights.Dispose();
        ModelKernels.Dispose();
        DecodeKernels.Dispose();
        Device.Dispose();
    }
}
