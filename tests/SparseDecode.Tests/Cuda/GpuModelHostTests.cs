using SparseDecode.Engine;
using SparseDecode.Cuda;
using SparseDecode.Diagnostics;
using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Tests.Cli;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Tests.Cuda;

/// <summary>The GPU model's host side, which runs without a GPU: shape presets, kernel choice, the rope tables it
/// uploads, the bf16 reference copy, option errors, and the one-line answer of `--device cuda` without a driver.</summary>
[Collection("console")]
public sealed class GpuModelHostTests
{
    [Theory]
    // (max, mean of GPU vs CPU; CPU bf16-vs-f32 cache max, mean) -> pass
    [InlineData(0.04, 0.004, 0.01, 0.001, true)]    // within the fixed thresholds
    [InlineData(0.063, 0.0088, 0.0764, 0.0178, true)] // the 32K bundled model: within what bf16 storage moves
    [InlineData(0.08, 0.0088, 0.0764, 0.0178, false)] // max beyond both yardsticks
    [InlineData(0.063, 0.02, 0.0764, 0.0178, false)]  // mean beyond both yardsticks
    [InlineData(0.06, 0.004, 0.01, 0.001, false)]     // a model insensitive to bf16 storage keeps the fixed max
    public void BfCacheParityIsHeldToTheLargerOfTheThresholdAndTheCpusOwnBf16Spread(double max, double mean,
        double cacheMax, double cacheMean, bool pass)
    {
        var r = new GpuParityCheck.Result("m", "bf16", 96, max, max, max, max, mean, max, 0, cacheMax, cacheMean, 95, 95);
        Assert.Equal(pass, r.Passed);
        Assert.False((r with { MaxDecodeDelta = double.NaN }).Passed);
    }

    [Fact]
    public void ShapePresetsAreLlama31()
    {
        var s8 = GpuShapes.Get("LLAMA-3.1-8B");
        Assert.Equal((32, 4096, 32, 8, 128, 14336, 128256), (s8.NumLayers, s8.HiddenSize, s8.NumHeads, s8.NumKvHeads, s8.HeadDim, s8.IntermediateSize, s8.VocabSize));
        Assert.Equal(RopeType.Llama3, s8.Rope.Type);
        Assert.Equal(8, s8.Rope.Factor);
        Assert.Equal(500000, s8.Rope.Theta);
        var s70 = GpuShapes.Get("llama-3.1-70b-16l");
        Assert.Equal((16, 8192, 64, 8, 128, 28672, 128256), (s70.NumLayers, s70.HiddenSize, s70.NumHeads, s70.NumKvHeads, s70.HeadDim, s70.IntermediateSize, s70.VocabSize));
        var e = Assert.Throws<ArgumentException>(() => GpuShapes.Get("llama-2"));
        Assert.Contains("llama-3.1-8b", e.Message);
    }

    [Fact]
    public void EachLaunchOfTheMatrixVectorKernelsTakesOneToEightRows()
    {
        Assert.Equal(("gemv_b1", 16), ModelKernels.GemvPlanOf(1));
        Assert.Equal(("gemv_b2", 16), ModelKernels.GemvPlanOf(2));
        Assert.Equal(("gemv_b4", 32), ModelKernels.GemvPlanOf(3));
        Assert.Equal(("gemv_b4", 32), ModelKernels.GemvPlanOf(4));
        Assert.Equal(("gemv_b8", 32), ModelKernels.GemvPlanOf(5));
        Assert.Equal(("gemv_b8", 32), ModelKernels.GemvPlanOf(ModelKernels.MaxRows));
        Assert.Throws<ArgumentOutOfRangeException>(() => ModelKernels.GemvPlanOf(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => ModelKernels.GemvPlanOf(ModelKernels.MaxRows + 1));
        // a step of two rows or more runs its products through cuBLAS; on the CUDA cores only when asked
        Assert.Equal(2, new GemvOptions().CublasMinRows);
        Assert.Equal(int.MaxValue, GemvOptions.CudaCoresOnly.CublasMinRows);
    }

    [Fact]
    public void DecodeProductsInBf16RunEveryRowThroughOnePartAndSplitKeepsThree()
    {
        // split: the activations' three bf16 parts from two rows on; bf16: one part, one row included, so that a row's
        // arithmetic does not change with the batch it is in
        Assert.Equal((2, 3), (GemvOptions.For(ProductPrecision.Split).CublasMinRows, GemvOptions.For(ProductPrecision.Split).ActivationParts));
        Assert.Equal((1, 1), (GemvOptions.For(ProductPrecision.Bf16).CublasMinRows, GemvOptions.For(ProductPrecision.Bf16).ActivationParts));
        Assert.Equal(ProductPrecision.Split, new EngineOptions().DecodePrecision);
    }

    [Fact]
    public void TheCacheSizeIsKeysValuesAndPageSummariesOfEveryLayer()
    {
        var s8 = GpuShapes.Get("llama-3.1-8b");
        // 32 layers × 8 KV heads × 128 channels × 2 bytes: 65,536 bytes per position for K and as much for V, and
        // per 16-position page a min and a max row as large as a position's K
        long positions = 32768, pages = positions / 16;
        Assert.Equal(2 * 65536 * positions + 2 * 65536 * pages, GpuKvCache.BytesFor(s8, 1, 32768));
        Assert.Equal(3 * GpuKvCache.BytesFor(s8, 1, 1000), GpuKvCache.BytesFor(s8, 3, 1000));
        Assert.Equal(2 * 65536 * 17 + 2 * 65536 * 2, GpuKvCache.BytesFor(s8, 1, 17));   // a started page has its summaries
    }

    [Theory]
    [InlineData("sparse-code-16m")]
    [InlineData("llama-3.1-8b")]
    public void RopeTablesOfACapacityAreTheEnginesOwnNumbers(string which)
    {
        // the GPU model uploads Rope(…, capacity)'s tables; they must equal the CPU engine's, built for the full context
        var c = which == "llama-3.1-8b" ? GpuShapes.Llama31_8B : ModelConfig.Load(Fixtures.BundledModel);
        int capacity = 700, half = c.HeadDim / 2;
        var gpu = new Rope(c.Rope, c.HeadDim, capacity);
        var cpu = new Rope(c.Rope, c.HeadDim, Math.Min(c.MaxPositions, 4096));
        Assert.Equal(capacity * half, gpu.CosTable.Length);
        Assert.True(gpu.CosTable.SequenceEqual(cpu.CosTable[..(capacity * half)]));
        Assert.True(gpu.SinTable.SequenceEqual(cpu.SinTable[..(capacity * half)]));
        // and rotating with them is the engine's rotation
        var v = Enumerable.Range(0, c.HeadDim).Select(i => MathF.Sin(i * 0.37f)).ToArray();
        var w = v.ToArray();
        cpu.Apply(v, 1, 613);
        var cos = gpu.CosTable.Slice(613 * half, half);
        var sin = gpu.SinTable.Slice(613 * half, half);
        for (int i = 0; i < half; i++)
        {
            Assert.Equal(w[i] * cos[i] - w[i + half] * sin[i], v[i]);
            Assert.Equal(w[i + half] * cos[i] + w[i] * sin[i], v[i + half]);
        }
    }

    [Fact]
    public unsafe void Bf16CopyRoundsMatricesAsTheUploadAndKeepsVectors()
    {
        string src = Fixtures.Model("llama3-gqa");
        string dst = Path.Combine(Path.GetTempPath(), "sd-bf16copy-" + Guid.NewGuid().ToString("N"));
        try
        {
            Bf16CheckpointCopy.Write(src, dst);
            using var a = WeightStore.Open(src);
            using var b = WeightStore.Open(dst);
            var c = ModelConfig.Load(dst);
            var q0 = a.Get("model.layers.0.self_attn.q_proj.weight", c.QDim, c.HiddenSize);
            var q1 = b.Get("model.layers.0.self_attn.q_proj.weight", c.QDim, c.HiddenSize);
            Assert.Equal(DType.F32, q0.Type);
            Assert.Equal(DType.BF16, q1.Type);
            var f = q0.ToFloatArray();
            var r = (ushort*)q1.Data;
            for (int i = 0; i < f.Length; i++) Assert.Equal(ElementConvert.SingleToBf16(f[i]), r[i]);
            var n0 = a.Get("model.layers.0.input_layernorm.weight", c.HiddenSize);
            var n1 = b.Get("model.layers.0.input_layernorm.weight", c.HiddenSize);
            Assert.Equal(n0.Type, n1.Type);
            Assert.Equal(n0.ToFloatArray(), n1.ToFloatArray());
            using var model = Cpu.Transformer.Load(dst);
            Assert.Equal(DType.BF16, model.WeightType);
        }
        finally
        {
            if (Directory.Exists(dst)) Directory.Delete(dst, true);
        }
    }

    [Fact]
    public void CandidateListsAreSortedDistinctAndInRange()
    {
        var lists = GpuDecodeBench.SortedLists(new Random(3), 4, 100, 1000);
        for (int r = 0; r < 4; r++)
        {
            var row = lists.AsSpan(r * 100, 100).ToArray();
            Assert.Equal(row.Order(), row);
            Assert.Equal(100, row.Distinct().Count());
            Assert.All(row, p => Assert.InRange(p, 0, 999));
        }
        // more entries than positions: every position once, padded with -1 first (skipped by the kernels)
        var full = GpuDecodeBench.SortedLists(new Random(3), 1, 8, 5);
        Assert.Equal([-1, -1, -1, 0, 1, 2, 3, 4], full);
    }

    [Fact]
    public void UnknownDeviceShapeOrMethodIsOneLineError()
    {
        var (code, _, err) = CliTests.Run("score", "--device", "tpu", "--model", Fixtures.Model("llama3-gqa"), "--token-ids", "1,2,3");
        Assert.NotEqual(0, code);
        Assert.Equal("error: Unknown device 'tpu': expected cpu or cuda.", err.Trim());
        (code, _, err) = CliTests.Run("gpu-step", "--shape", "llama-2");
        Assert.NotEqual(0, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.StartsWith("error: Unknown shape 'llama-2'", err);
        (code, _, err) = CliTests.Run("gpu-step", "--methods", "dense,bogus");
        Assert.NotEqual(0, code);
        Assert.StartsWith("error: Unknown method 'bogus'", err);
        (code, _, err) = CliTests.Run("gpu-step", "--batched", "32768");
        Assert.NotEqual(0, code);
        Assert.StartsWith("error: --batched takes CONTEXTxBATCH", err);
    }

    [NoCudaFact]
    public void CudaWithoutADriverIsOneSentenceAndNonZeroExit()
    {
        string why = CudaDevice.Probe()!;
        foreach (var args in new[]
        {
            new[] { "score", "--device", "cuda", "--model", Fixtures.Model("llama3-gqa"), "--token-ids", "1,2,3" },
            ["generate", "--device", "cuda", "--model", Fixtures.BundledModel, "--prompt", "a", "-n", "2"],
            ["gpu-check", "--model", Fixtures.Model("llama3-gqa")],
            ["bench", "--device", "cuda", "--model", Fixtures.BundledModel, "--context", "64", "--steps", "2"],
        })
        {
            var (code, _, err) = CliTests.Run(args);
            Assert.NotEqual(0, code);
            Assert.Equal($"error: {why}", err.Trim());
        }
    }
}

/// <summary>A fact for machines without a usable GPU (CI): what the program says when CUDA is missing.</summary>
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (CudaDevice.Probe() is null) Skip = "A GPU is present; this test checks the answer without one.";
    }
}
