using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using SparseDecode.Cpu;
using SparseDecode.Model;

namespace SparseDecode.Benchmarks;

/// <summary>Dense decode attention of one Llama-3.1-8B layer (32 query heads, 8 KV heads, head_dim 128, bf16 or q8
/// cache) on all cores, as the engine runs it, against a copy that moves as many bytes: the copy reads and writes half the
/// layer's K/V bytes, the attention reads all of them once. So Ratio (attention time ÷ copy time) is the copy
/// bandwidth (read + write) ÷ attention's read bandwidth: at most 2 means attention reads at ≥ 50% of it.</summary>
[InProcess]
[WarmupCount(2)]
[IterationCount(7)]
[MemoryDiagnoser]
public unsafe class DecodeAttentionBandwidthBenchmarks
{
    [Params(4096, 32768)]
    public int Context;

    [Params(DType.BF16, DType.Q8)]
    public DType Cache;

    private LayerCache _layer = null!;
    private GroupedDecodeAttention _attention = null!;
    private float[] _output = null!;
    private byte* _from, _to;
    private long _half;
    private CopyParts _copy = null!;

    [GlobalSetup]
    public void Setup()
    {
        _layer = new LayerCache(Context, Cache);
        _attention = new GroupedDecodeAttention(LayerCache.QueryHeads, LayerCache.KvHeads, LayerCache.HeadDim, Context);
        _output = new float[LayerCache.QueryHeads * LayerCache.HeadDim];
        _half = _layer.Cache.BytesPerPosition * (long)Context / 2;
        _from = (byte*)NativeMemory.AlignedAlloc((nuint)_half, 64);
        _to = (byte*)NativeMemory.AlignedAlloc((nuint)_half, 64);
        new Span<byte>(_from, checked((int)_half)).Fill(1);
        new Span<byte>(_to, checked((int)_half)).Fill(2);
        _copy = new CopyParts(_from, _to, _half, WorkerPool.Shared.Threads);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _layer.Dispose();
        NativeMemory.AlignedFree(_from);
        NativeMemory.AlignedFree(_to);
    }

    /// <summary>Half the layer's K/V bytes copied on all cores (one part per core): the same bytes moved as attention reads.</summary>
    [Benchmark(Baseline = true)]
    public void CopyOfTheSameTraffic() => WorkerPool.Shared.Run(_copy, _copy.Parts);

    [Benchmark]
    public void DenseDecodeAttention() => _attention.Run(_layer.Cache, 0, _layer.Query, _output, Context, 0.088f);

    private sealed class CopyParts(byte* from, byte* to, long bytes, int parts) : ParallelWork
    {
        public int Parts => parts;

        public override void Execute(int item, int worker)
        {
            long start = bytes * item / parts, end = bytes * (item + 1) / parts;
            Buffer.MemoryCopy(from + start, to + start, end - start, end - start);
        }
    }
}
