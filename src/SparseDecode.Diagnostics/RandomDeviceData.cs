using SparseDecode.Cuda;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>Random weights and cache contents drawn on the device, for timing real model shapes at long contexts
/// without downloading weights or running a prefill.</summary>
internal static class RandomDeviceData
{
    /// <summary>Random weights of the given shape: matrices uniform in ±1/√fan-in (so activations stay in range
    /// through the layers), norms 1, no biases, untied head.</summary>
    public static GpuWeights Weights(DiagnosticKernels random, ModelKernels mk, ModelConfig c, CudaStream s, uint seed = 1)
    {
        var dev = random.Device;
        uint next = seed;
        DeviceBuffer Matrix(int rows, int cols)
        {
            var b = dev.Allocate((long)rows * cols * 2);
            random.FillRandomBf16(b, (long)rows * cols, next++, 1f / MathF.Sqrt(cols), s);
            return b;
        }
        DeviceBuffer Ones(int n)
        {
            var b = dev.Allocate(n * 4L);
            mk.Fill(b, n, 1f, s);
            return b;
        }
        var layers = new GpuLayerWeights[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++)
            layers[l] = new GpuLayerWeights
            {
                AttentionNorm = Ones(c.HiddenSize),
                Qkv = Matrix(c.QDim + 2 * c.KvDim, c.HiddenSize),
                O = Matrix(c.HiddenSize, c.QDim),
                MlpNorm = Ones(c.HiddenSize),
                GateUp = Matrix(2 * c.IntermediateSize, c.HiddenSize),
                Down = Matrix(c.HiddenSize, c.IntermediateSize),
            };
        var embedding = Matrix(c.VocabSize, c.HiddenSize);
        var head = Matrix(c.VocabSize, c.HiddenSize);
        s.Synchronize();
        return new GpuWeights(c, layers, embedding, Ones(c.HiddenSize), head);
    }

    /// <summary>Random bf16 keys and values in every slot and layer of the cache, with their page summaries up to
    /// `length` when the heads are the tuned kernels' size (the summary kernel's shape).</summary>
    public static void FillCache(DiagnosticKernels random, DecodeKernels dk, GpuKvCache cache, int length, CudaStream s, uint seed = 11)
    {
        var c = cache.Config;
        for (int l = 0; l < c.NumLayers; l++)
        {
            random.FillRandomBf16(cache.Keys(l), cache.Keys(l).Bytes / 2, seed + (uint)(2 * l), 1f, s);
            random.FillRandomBf16(cache.Values(l), cache.Values(l).Bytes / 2, seed + (uint)(2 * l + 1), 1f, s);
        }
        if (c.HeadDim != DecodeKernels.HeadDim) return;
        int rows = Math.Min(cache.Slots, cache.MaxRows);
        for (int first = 0; first < cache.Slots; first += rows)
        {
            int n = Math.Min(rows, cache.Slots - first);
            var slots = Enumerable.Range(first, n).ToArray();
            cache.SetRows(slots, new int[n], Enumerable.Repeat(length - 1, n).ToArray(), s);
            for (int l = 0; l < c.NumLayers; l++) dk.PageSummaries(cache.View(l, n, length), s);
            s.Synchronize();
        }
    }
}
