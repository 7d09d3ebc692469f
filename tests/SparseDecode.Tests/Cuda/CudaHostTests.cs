using System.Text.RegularExpressions;
using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Tests.Cuda;

/// <summary>The CUDA backend's host logic, which runs without a GPU: launch planning, the reference the kernels
/// are checked against, kernel sources and their cache names, and the missing-driver message.</summary>
public sealed class CudaHostTests
{
    [Fact]
    public void PageBoundTurnsFollowTheKernelsLaneSegments()
    {
        // sel_page_bounds: 8 warps × PB_TURN (2) × pages per warp (32 lanes ÷ the power of two covering headDim / 8)
        Assert.Equal(32, SelectionKernels.PageBoundsPagesPerTurn(128));   // 16 lanes a page
        Assert.Equal(64, SelectionKernels.PageBoundsPagesPerTurn(64));    // 8
        Assert.Equal(16, SelectionKernels.PageBoundsPagesPerTurn(256));   // 32
        Assert.Equal(128, SelectionKernels.PageBoundsPagesPerTurn(24));   // 3 lanes of channels round up to 4
        Assert.Equal(512, SelectionKernels.PageBoundsPagesPerTurn(2));    // one lane a page
    }

    [Fact]
    public void SharedMemoryStagesAreSizedToTheirContents()
    {
        // a candidate bitmap in shared memory up to 10,240 words (320K positions), else in device memory
        Assert.Equal(4096, SelectionKernels.SharedBitmapBytes(1024));
        Assert.Equal(40960, SelectionKernels.SharedBitmapBytes(10240));
        Assert.Equal(0, SelectionKernels.SharedBitmapBytes(10241));
        // the top-k stage: a padding word per 32 entries, plus one; the largest stays under 96 KB
        Assert.Equal((32 + 1 + 1) * 4, DecodeKernels.TopKStageBytes(32));
        Assert.True(DecodeKernels.TopKStageBytes(DecodeKernels.TopKStageEntries) <= 96 * 1024 + 512);
    }

    [Fact]
    public void ChunksFillFourWavesAndRoundToTheGranularity()
    {
        // 128K keys × 8 heads over 132 SMs × 3 blocks × 4 waves = 1584 blocks → 662 keys → 704 (multiple of 64)
        Assert.Equal(704, LaunchPlan.Chunk(131072, 8, 1, 132, 3));
        // small contexts stop at the minimum chunk
        Assert.Equal(64, LaunchPlan.Chunk(1000, 8, 1, 132, 3));
        // and a huge one at the maximum
        Assert.Equal(4096, LaunchPlan.Chunk(1L << 30, 8, 1, 132, 3));
        Assert.Equal(187, LaunchPlan.Chunks(131072, 704));
        Assert.Equal(1, LaunchPlan.Chunks(0, 64));
    }

    [Fact]
    public void TopKBlocksAndStrides()
    {
        Assert.Equal(32, LaunchPlan.TopKBlocks(131072));
        Assert.Equal(33, LaunchPlan.TopKBlocks(131073));
        Assert.Equal(1, LaunchPlan.TopKBlocks(1));
        Assert.Equal(6144, LaunchPlan.ScoreStride(6144));
        Assert.Equal(8192, LaunchPlan.ScoreStride(8190));
    }

    [Fact]
    public void OrderKeyIsMonotoneOverFloats()
    {
        float[] xs = [float.NegativeInfinity, -1e30f, -2.5f, -1f, -1e-30f, -0f, 0f, 1e-30f, 1f, 2.5f, 1e30f, float.PositiveInfinity];
        for (int i = 1; i < xs.Length; i++)
            Assert.True(GpuReference.OrderKey(xs[i - 1]) < GpuReference.OrderKey(xs[i]), $"{xs[i - 1]} vs {xs[i]}");
    }

    [Fact]
    public void ReferenceTopKTakesLowestPositionsAmongTiesAscending()
    {
        float[] s = [1, 5, 3, 5, 2, 5, float.NegativeInfinity];
        Assert.Equal([1, 3], GpuReference.TopK(s, default, 2));        // ties at 5: positions 1 and 3, not 5
        Assert.Equal([1, 2, 3, 5], GpuReference.TopK(s, default, 4));
        // k over the row: all entries, −∞ as −1, padded with −1
        Assert.Equal([0, 1, 2, 3, 4, 5, -1, -1, -1], GpuReference.TopK(s, default, 9));
        // candidates map entries to positions
        Assert.Equal([30, 50], GpuReference.TopK([0f, 9f, 1f, 8f], [10, 30, 40, 50], 2));
    }

    [Fact]
    public void ReferenceTopKExpandsPagesToTokensUnderTheLimit()
    {
        // pages 1 and 3 of 4, page size 4, 14 tokens: page 3 holds 12, 13 and two positions past the end
        Assert.Equal([4, 5, 6, 7, 12, 13, -1, -1], GpuReference.TopK([0f, 5f, 1f, 6f], default, 2, expand: 4, limit: 14));
    }

    [Fact]
    public void ReferenceAttentionIsSoftmaxWeightedValues()
    {
        var l = new GpuReference.Layout(1, 1, 4, 3, 16);
        var k = new ushort[3 * 128];
        var v = new ushort[3 * 128];
        for (int p = 0; p < 3; p++)
        {
            k[p * 128] = GpuReference.ToBf16(p);        // key p: (p, 0, ...)
            v[p * 128 + 1] = GpuReference.ToBf16(10 * (p + 1)); // value p: (0, 10(p+1), 0, ...)
        }
        var q = new float[4 * 128];
        q[0] = (float)Math.Sqrt(128);                   // score of key p = p
        var o = new double[128];
        double lse = GpuReference.Attention(l, k, v, 3, q, 0, 0, default, true, o);
        double z = 1 + Math.E + Math.E * Math.E;
        // (the query's √128 is a float: scores are exact to ~1e-7)
        Assert.Equal((10 + 20 * Math.E + 30 * Math.E * Math.E) / z, o[1], 5);
        Assert.Equal(Math.Log(z), lse, 6);
        // an index list with a skipped entry (−1) and one past the length
        lse = GpuReference.Attention(l, k, v, 3, q, 0, 0, [2, -1, 7], false, o);
        Assert.Equal(30, o[1], 10);
        Assert.Equal(2, lse, 6);
    }

    [Fact]
    public void RelativeErrorFailsOnNaNAndOnMissingNegativeInfinity()
    {
        Assert.Equal(0, GpuReference.RelativeError([1f, float.NegativeInfinity], [1.0, double.NegativeInfinity]));
        Assert.Equal(double.PositiveInfinity, GpuReference.RelativeError([float.NaN], [1.0]));
        Assert.Equal(double.PositiveInfinity, GpuReference.RelativeError([0f], [double.NegativeInfinity]));
        Assert.Equal(0.1, GpuReference.RelativeError([1.1f, 0f], [1.0, 0.0]), 6);
    }

    [Fact]
    public void Bf16RoundsToNearestEven()
    {
        Assert.Equal(1.0, GpuReference.Bf16(GpuReference.ToBf16(1.0f)));
        Assert.Equal(1.0078125, GpuReference.Bf16(GpuReference.ToBf16(1.0078125f)));      // exactly representable
        Assert.Equal(1.0, GpuReference.Bf16(GpuReference.ToBf16(1.00390625f)));           // halfway: to even
        Assert.Equal(1.015625, GpuReference.Bf16(GpuReference.ToBf16(1.01171875f)));     // halfway: to even (up)
    }

    [Fact]
    public void EveryHostKernelNameIsAnExternCKernelInTheEmbeddedSource()
    {
        var headers = KernelSource.Headers().Select(h => h.Name).ToHashSet();
        Assert.Contains("common.cuh", headers);
        foreach (var (file, names) in new[] { (DecodeKernels.SourceFile, DecodeKernels.KernelNames.Concat(DecodeKernels.ClusterKernelNames).ToArray()), (ModelKernels.SourceFile, ModelKernels.KernelNames), (SelectionKernels.SourceFile, SelectionKernels.KernelNames), (PrefillAttentionKernels.SourceFile, PrefillAttentionKernels.KernelNames.ToArray()), (SamplingKernels.SourceFile, SamplingKernels.KernelNames) })
        {
            Assert.Contains(file, KernelSource.Names());
            var src = KernelSource.Read(file);
            var declared = Regex.Matches(src, @"extern ""C"" __global__ void (?:__\w+__\([^)]*\) )*(\w+)\(")
                .Select(m => m.Groups[1].Value).ToHashSet();
            foreach (var name in names) Assert.Contains(name, declared);
            // NVRTC gets no include path: every include names an embedded header
            foreach (Match m in Regex.Matches(src, @"#include\s+""([^""]+)"""))
                Assert.Contains(m.Groups[1].Value, headers);
            Assert.DoesNotMatch(@"#include\s*<", src);
        }
    }

    /// <summary>The host's row of a device draw has sampling.cu's RowDraw layout: four 4-byte fields, then the
    /// uniform number as a double at byte 16.</summary>
    [Fact]
    public void ADeviceDrawRowHasTheKernelsLayout()
    {
        Assert.Equal(24, System.Runtime.InteropServices.Marshal.SizeOf<SamplingKernels.RowDraw>());
        Assert.Equal(16, (int)System.Runtime.InteropServices.Marshal.OffsetOf<SamplingKernels.RowDraw>(nameof(SamplingKernels.RowDraw.Uniform)));
        Assert.Contains("double uniform;", KernelSource.Read(SamplingKernels.SourceFile));
    }

    [Fact]
    public void CacheNameDependsOnSourceOptionsArchitectureAndCompiler()
    {
        string a = KernelSource.CacheFileName("x.cu", "src", ["-O3"], "sm_90", "nvrtc 13.0");
        Assert.Matches(@"^x-sm_90-[0-9a-f]{16}\.cubin$", a);
        Assert.Equal(a, KernelSource.CacheFileName("x.cu", "src", ["-O3"], "sm_90", "nvrtc 13.0"));
        Assert.NotEqual(a, KernelSource.CacheFileName("x.cu", "src2", ["-O3"], "sm_90", "nvrtc 13.0"));
        Assert.NotEqual(a, KernelSource.CacheFileName("x.cu", "src", ["-O2"], "sm_90", "nvrtc 13.0"));
        Assert.NotEqual(a, KernelSource.CacheFileName("x.cu", "src", ["-O3"], "sm_90", "nvrtc 13.1"));
    }

    [Fact]
    public void CacheDirectoryHonoursTheOverride()
    {
        Environment.SetEnvironmentVariable("SPARSEDECODE_KERNEL_CACHE", "/tmp/sd-cache-test");
        try
        {
            Assert.Equal("/tmp/sd-cache-test", KernelSource.CacheDirectory());
        }
        finally
        {
            Environment.SetEnvironmentVariable("SPARSEDECODE_KERNEL_CACHE", null);
        }
        Assert.EndsWith(Path.Combine("sparsedecode", "kernels"), KernelSource.CacheDirectory());
    }

    [Fact]
    public void MissingDriverOrGpuIsOneSentence()
    {
        var reason = CudaDevice.Probe();
        if (reason is null) return; // a GPU is present: CudaKernelTests cover it
        Assert.EndsWith(".", reason);
        Assert.DoesNotContain('\n', reason);
        var e = Assert.Throws<CudaUnavailableException>(() => CudaDevice.Open());
        Assert.Equal(reason, e.Message);
    }

    [Fact]
    public unsafe void KernelArgumentsSitInEightByteSlots()
    {
        var a = new KernelArgs();
        a.Add(0x1122334455667788UL);
        a.Add(-1);
        a.Add(1.5f);
        a.Add(-2L);
        Assert.Equal(4, a.Count);
        Assert.Equal(0x1122334455667788UL, a.Values[0]);
        Assert.Equal(0xFFFFFFFFUL, a.Values[1]);                 // an int in the low half
        Assert.Equal((ulong)BitConverter.SingleToUInt32Bits(1.5f), a.Values[2]);
        Assert.Equal(unchecked((ulong)-2L), a.Values[3]);
    }
}

/// <summary>The diagnostics' own kernels travel with their assembly, not the library's.</summary>
public sealed class DiagnosticKernelSourceTests
{
    [Fact]
    public void DiagnosticKernelsAreEmbeddedInTheDiagnosticsAssemblyOnly()
    {
        var asm = typeof(SparseDecode.Diagnostics.DiagnosticKernels).Assembly;
        string prefix = SparseDecode.Diagnostics.DiagnosticKernels.ResourcePrefix, file = SparseDecode.Diagnostics.DiagnosticKernels.SourceFile;
        Assert.Contains(prefix + file, asm.GetManifestResourceNames());
        string text = SparseDecode.Cuda.Interop.KernelSource.Read(file, asm, prefix);
        foreach (var kernel in new[] { "fill_random_bf16", "fill_random_f32", "read_bytes" })
        {
            Assert.Contains($"void {kernel}(", text);
            Assert.DoesNotContain($"void {kernel}(", SparseDecode.Cuda.Interop.KernelSource.Read("decode_attention.cu"));
        }
    }
}
