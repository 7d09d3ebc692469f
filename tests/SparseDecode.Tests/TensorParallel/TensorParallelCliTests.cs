using System.Runtime.InteropServices;
using SparseDecode.Cli.TensorParallel;
using SparseDecode.Cuda;
using SparseDecode.Tests.Cli;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Tests.TensorParallel;

/// <summary>The host side of `--tensor-parallel`: how workers are started, the NCCL id they are handed, and the one
/// sentence each command says when the split, the device or the library is not there.</summary>
[Collection("console")]
public sealed partial class TensorParallelCliTests
{
    [Fact]
    public void HelpSaysOnlyOneGpuRunsToday()
    {
        foreach (string command in new[] { "generate", "bench", "eval", "serve" })
            Assert.Contains("Only 1 runs today", CliTests.Help(command));
        Assert.DoesNotContain("Only 1 runs today", CliTests.Help("gpu-nccl-check"));
    }

    [Fact]
    public void WorkersGetTheSameArgumentsAndTheirRank()
    {
        Assert.Equal(["gpu-nccl-check", "--tensor-parallel", "4", "--tp-rank", "3"],
            RankLauncher.WorkerArguments(["gpu-nccl-check", "--tensor-parallel", "4"], 3));
    }

    [Fact]
    public void EachRankSeesItsOwnGpu()
    {
        Assert.Equal("2", RankLauncher.DeviceFor(2, null));
        Assert.Equal("6", RankLauncher.DeviceFor(2, "4, 5,6,7"));
        var e = Assert.Throws<CudaUnavailableException>(() => RankLauncher.DeviceFor(2, "4,5"));
        Assert.Contains("lists 2", e.Message);
    }

    [Fact]
    public void UniqueIdRoundTripsThroughHex()
    {
        string hex = string.Concat(Enumerable.Range(0, NcclUniqueId.Bytes).Select(i => ((byte)(i * 37 + 11)).ToString("X2")));
        Assert.Equal(hex, NcclUniqueId.FromHex(hex).ToHex());
        Assert.Equal(hex, NcclUniqueId.FromHex(hex.ToLowerInvariant() + "\n").ToHex());
        Assert.Contains("256 hex digits", Assert.Throws<ArgumentException>(() => NcclUniqueId.FromHex(hex[..254])).Message);
        Assert.Contains("256 hex digits", Assert.Throws<ArgumentException>(() => NcclUniqueId.FromHex("zz" + hex[2..])).Message);
    }

    [Theory]
    [InlineData("generate", "--prompt", "hi")]
    [InlineData("bench")]
    [InlineData("eval", "--quick")]
    public void ASplitTheModelCannotTakeIsOneSentence(params string[] args)
    {
        var r = CliTests.Run([.. args, "--tensor-parallel", "3", "--device", "cuda"]);
        Assert.Equal(1, r.code);
        Assert.Equal("error: --tensor-parallel 3 does not divide the model's 2 KV heads (each rank keeps whole KV heads and their query groups); use one of 1, 2.", r.stderr.Trim());
    }

    [Fact]
    public void TensorParallelNeedsTheGpuAndSaysWhatIsNotBuilt()
    {
        var cpu = CliTests.Run("generate", "--prompt", "hi", "--tensor-parallel", "2");
        Assert.Equal("error: --tensor-parallel shards the model over GPUs, so it needs --device cuda.", cpu.stderr.Trim());
        var gpu = CliTests.Run("bench", "--tensor-parallel", "2", "--device", "cuda");
        Assert.Equal(1, gpu.code);
        Assert.StartsWith("error: bench --tensor-parallel 2 is not available yet", gpu.stderr.Trim());
        Assert.Single(gpu.stderr.Trim().Split('\n'));
    }

    [Fact]
    public void NcclCheckWithoutAGpuOrNcclIsOneSentence()
    {
        string? noGpu = CudaDevice.Probe(), noNccl = NcclCommunicator.Probe();
        if (noGpu is null && noNccl is null) return;   // a machine with both runs the real check (bench/gpu/tp.sh)
        var r = CliTests.Run("gpu-nccl-check", "--tensor-parallel", "1");
        Assert.Equal(1, r.code);
        Assert.Equal($"error: {noGpu ?? noNccl}", r.stderr.Trim());
    }

    [Fact]
    public void MissingNcclNamesTheLibraryAndTheFix()
    {
        if (NcclCommunicator.Probe() is not string reason) return;   // NCCL is installed here
        Assert.StartsWith("NCCL (libnccl.so.2) was not found", reason);
        Assert.Contains("SPARSEDECODE_NCCL", reason);
    }

    [Fact]
    public void NvlinkMulticastIsTurnedOffWhereNcclReadsIt()
    {
        Assert.Equal(0, SetEnv(SparseDecode.Cuda.Interop.Nccl.NvlsVariable, "1", 1));   // as a user's shell might
        SparseDecode.Cuda.Interop.Nccl.DisableNvlinkMulticast();
        Assert.Equal("0", Marshal.PtrToStringUTF8(GetEnv(SparseDecode.Cuda.Interop.Nccl.NvlsVariable)));
        Assert.Equal("0", Environment.GetEnvironmentVariable(SparseDecode.Cuda.Interop.Nccl.NvlsVariable));
    }

    [LibraryImport("libc", EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetEnv(string name);

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
