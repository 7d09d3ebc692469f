using BenchmarkDotNet.Attributes;
using SparseDecode.Cpu;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Benchmarks;

/// <summary>Each method's selection cost per layer on one core, amortised over a 32-layer Llama-3.1-8B-shaped
/// step as the method pays it (TidalDecode scores all keys in 2 of 32 layers; LFPS scores its candidates; PrHS
/// shares and verifies; Quest bounds pages). The selector sees the same one-layer cache at every layer: the cost
/// of selection depends on the context and the budget, not on the values. Warm-up steps bring history-based
/// methods (LFPS, PrHS) to their steady state before timing.</summary>
// In-process: no project is generated and built per run, so the benchmarks also run from a self-contained publish
// on a machine without the SDK (the numbers in docs/performance.md were taken that way).
[InProcess]
[WarmupCount(2)]
[IterationCount(5)]
public class SelectionBenchmarks
{
    [Params(8192, 32768, 131072)]
    public int Context;

    [Params("oracle", "quest", "tidal", "lfps", "prhs")]
    public string Method = "";

    private const int Layers = 32;
    private const int Headroom = 4096;
    private SelectorSpec _spec = null!;
    private LayerCache _layer = null!;
    private CpuSelectionBackend _backend = null!;
    private OneLayerForEvery _everyLayer = null!;
    private SpanPlanOps _selector = null!;
    private LayerSelection _selection = null!;
    private int _position;

    public static ModelConfig Llama8BShape => new()
    {
        Architecture = Architecture.Llama, ArchitectureName = "LlamaForCausalLM", VocabSize = 128256, HiddenSize = 4096,
        IntermediateSize = 14336, NumLayers = Layers, NumHeads = LayerCache.QueryHeads, NumKvHeads = LayerCache.KvHeads,
        HeadDim = LayerCache.HeadDim, MaxPositions = 131072 + 64, RmsNormEps = 1e-5,
        Rope = new RopeScaling(RopeType.Default, 500000), TieEmbeddings = false, QkvBias = false, OutputBias = false, MlpBias = false,
    };

    [GlobalSetup]
    public void Setup()
    {
        _layer = new LayerCache(Context + Headroom);
        _backend = new CpuSelectionBackend(_layer.Cache, LayerCache.QueryHeads, 1f / MathF.Sqrt(LayerCache.HeadDim));
        _everyLayer = new OneLayerForEvery(_backend);
        _spec = SelectorSpec.Parse(Method, "2048", new Dictionary<string, string>());
        Restart();
    }

    [GlobalCleanup]
    public void Cleanup() => _layer.Dispose();

    /// <summary>A fresh sequence at context Context, brought to its steady state by four steps.</summary>
    private void Restart()
    {
        _selector = new SpanPlanOps(_spec.CreatePlan(Llama8BShape, Llama8BShape.MaxPositions));
        _selection = new LayerSelection(_selector.Granularity == SelectionGranularity.QueryHead ? LayerCache.QueryHeads : LayerCache.KvHeads,
            Context + Headroom, _selector.Granularity);
        _position = Context - 1;
        for (int i = 0; i < 4; i++) Step();
    }

    /// <summary>One decode step's selections over all 32 layers at the next position (the cache holds Headroom
    /// positions beyond Context, so n stays within a few thousand of Context; a sequence that reaches the end
    /// restarts).</summary>
    private void Step()
    {
        if (_position + 1 >= Context + Headroom) Restart();
        _position++;
        _selector.BeginStep(_position);
        for (int l = 0; l < Layers; l++)
        {
            _selection.Dense = false;
            _backend.Bind(0, _layer.Query, _position + 1);
            _everyLayer.Layer = l;
            _selector.Select(_everyLayer, _selection);
        }
    }

    /// <summary>Reported per layer: one step's time divided by 32 via OperationsPerInvoke.</summary>
    [Benchmark(OperationsPerInvoke = Layers)]
    public void SelectionPerLayer() => Step();
}
