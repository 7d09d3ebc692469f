using SparseDecode.Cuda;
using Xunit.Abstractions;

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

    /// <summary>Selector policies decoding on the GPU (host policy, GPU selection backend, sparse any-shape
    /// attention) against the same policies on the CPU, on the bundled model where they move log p far from dense.</summary>
    [CudaFact]
    public void SelectorPoliciesOnTheGpuMatchTheCpu()
    {
        using var device = CudaDevice.Open();
        using var dk = new DecodeKernels(device);
        using var mk = new ModelKernels(device);
        foreach (var method in new[] { "tidal", "lfps", "quest", "prhs" })
        {
            var spec = SparseDecode.Selection.SelectorSpec.Parse(method, "16", new Dictionary<string, string>());
            var r = GpuParityCheck.RunSparse(dk, mk, Fixtures.BundledModel, spec, 128);
            output.WriteLine($"{method}: max |Δ| {r.MaxDelta:G3}, mean {r.MeanDelta:G3}, policy vs dense {r.MaxFromDense:G3}");
            Assert.True(r.Passed, $"{method}: max |Δ log p| {r.MaxDelta:G3}, mean {r.MeanDelta:G3}");
        }
    }
}

