using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using Xunit.Abstractions;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Tests.Cuda;

/// <summary>The CUDA kernels against the float64 reference, on a GPU (skipped without one).</summary>
public sealed class CudaKernelTests(ITestOutputHelper output)
{
    [CudaFact]
    public void EveryKernelMatchesTheFloat64Reference()
    {
        using var device = CudaDevice.Open();
        using var kernels = new DecodeKernels(device);
        var results = GpuSelfCheck.Run(kernels, seed: 77);
        foreach (var r in results) output.WriteLine($"{r.Name}: {r.Error:G3} (≤ {r.Threshold:G3}) {r.Detail}");
        Assert.NotEmpty(results);
        Assert.All(results, r => Assert.True(r.Passed, $"{r.Name}: error {r.Error:G3} over {r.Threshold:G3}. {r.Detail}"));
    }

    [CudaFact]
    public void SecondLoadComesFromTheDiskCache()
    {
        var dir = Path.Combine(Path.GetTempPath(), "sd-kcache-" + Guid.NewGuid().ToString("N"));
        Environment.SetEnvironmentVariable("SPARSEDECODE_KERNEL_CACHE", dir);
        try
        {
            using var device = CudaDevice.Open();
            using (var first = new DecodeKernels(device)) Assert.False(first.FromCache);
            using var second = new DecodeKernels(device);
            Assert.True(second.FromCache);
            Assert.Single(Directory.GetFiles(dir, "*.cubin"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("SPARSEDECODE_KERNEL_CACHE", null);
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }

    [CudaFact]
    public void NoKernelSpillsToLocalMemory()
    {
        using var device = CudaDevice.Open();
        using var kernels = new DecodeKernels(device);
        foreach (var (name, regs, local, _, blocks) in kernels.Resources())
        {
            output.WriteLine($"{name}: {regs} registers, {local} local bytes, {blocks} blocks/SM");
            Assert.Equal(0, local);
            Assert.True(blocks >= 1, name);
        }
        using var selection = new SelectionKernels(device);
        foreach (var (name, regs, local, _) in selection.Resources())
        {
            output.WriteLine($"{name}: {regs} registers, {local} local bytes");
            Assert.Equal(0, local);
        }
    }

    /// <summary>The whole decode step: log-probabilities equal to the CPU engine's on the same bf16 weights, through
    /// prefill chunks, graph-replayed decode steps and launch-by-launch steps.</summary>
    [CudaFact]
    public void GpuModelLogprobsMatchTheCpuEngineOnEveryFixtureAndTheBundledModel()
    {
        using var device = CudaDevice.Open();
        using var dk = new DecodeKernels(device);
        using var mk = new ModelKernels(device);
        foreach (var dir in Fixtures.ModelNames.Select(Fixtures.Model).Append(Fixtures.BundledModel))
        {
            var r = GpuParityCheck.Run(dk, mk, dir, 64);
            output.WriteLine($"{Path.GetFileName(dir)}: max |Δ| {r.MaxDelta:G3}, mean {r.MeanDelta:G3}, CPU's own spread {r.CpuSelfSpread:G3}");
            Assert.True(r.Passed, $"{dir}: max |Δ log p| {r.MaxDelta:G3}, mean {r.MeanDelta:G3}");
        }
    }

    /// <summary>Each method decoding on the GPU (its plan inside the step graph) against the same method on the CPU, on the bundled model where the methods move log p
    /// far from dense: log-probabilities, and the plans' index lists.</summary>
    [CudaFact]
    public void SparseMethodsOnTheGpuMatchTheCpu()
    {
        using var device = CudaDevice.Open();
        using var dk = new DecodeKernels(device);
        using var mk = new ModelKernels(device);
        foreach (var method in new[] { "oracle", "streaming", "tidal", "lfps", "quest", "prhs", "hshare" })
        {
            var spec = SparseDecode.Selection.SelectorSpec.Parse(method, "16", new Dictionary<string, string>());
            var r = GpuParityCheck.RunSparse(dk, mk, Fixtures.BundledModel, spec, 128);
            output.WriteLine($"{method}: max |Δ| {r.MaxDelta:G3}, mean {r.MeanDelta:G3}, policy vs dense {r.MaxFromDense:G3}, overlap {r.MeanOverlap:F4} / {r.MinOverlap:F4}");
            Assert.True(r.Passed, $"{method}: max |Δ log p| {r.MaxDelta:G3}, mean {r.MeanDelta:G3}");
            // the device plans choose the CPU's lists but where near-equal scores tie differently
            Assert.True(r.MeanOverlap >= 0.9, $"{method}: index lists overlap {r.MeanOverlap:F4} with the CPU's");
        }
    }
}

