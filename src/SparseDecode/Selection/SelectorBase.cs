using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>What every per-sequence selector shares: the model's shape, the budget, the decode-step counter,
/// and buffers that grow (by doubling) with the context so that a step allocates nothing once warm.</summary>
public abstract class SelectorBase : IKvSelector
{
    protected SelectorBase(string name, ModelConfig config, Budget budget, SelectionGranularity granularity)
    {
        Name = name;
        Budget = budget;
        Granularity = granularity;
        Layers = config.NumLayers;
        Heads = granularity == SelectionGranularity.QueryHead ? config.NumHeads : config.NumKvHeads;
        Group = config.GroupSize;
    }

    public string Name { get; }
    public SelectionGranularity Granularity { get; }
    public Budget Budget { get; }
    protected int Layers { get; }
    /// <summary>Selection heads: query heads or KV heads per the granularity.</summary>
    protected int Heads { get; }
    protected int Group { get; }
    /// <summary>Position of the token being decoded (backend.Context = Position + 1).</summary>
    protected int Position { get; private set; } = -1;
    /// <summary>Decode steps begun so far: 1 during the first.</summary>
    protected int Steps { get; private set; }

    public virtual void BeginStep(int position)
    {
        Position = position;
        Steps++;
    }

    public void Select(ISelectionBackend backend, LayerSelection selection)
    {
        if (selection.Granularity != Granularity || selection.Heads != backend.HeadsFor(Granularity))
            throw new InvalidOperationException(
                $"The {Name} selector selects per {Granularity} ({backend.HeadsFor(Granularity)} heads) but the layer selection was made for {selection.Granularity} with {selection.Heads} heads.");
        selection.Dense = false;
        SelectLayer(backend, selection);
    }

    protected abstract void SelectLayer(ISelectionBackend backend, LayerSelection selection);

    /// <summary>Every position for one head: dense attention expressed as an index list.</summary>
    protected static void SelectAll(LayerSelection selection, int head, int n)
    {
        var b = selection.Buffer(head);
        for (int i = 0; i < n; i++) b[i] = i;
        selection.SetCount(head, n);
    }

    protected static void Ensure<T>(ref T[] buffer, int length)
    {
        if (buffer.Length < length) buffer = new T[Math.Max(length, 2 * buffer.Length)];
    }

    protected static T[][] Jagged<T>(int outer, int inner)
    {
        var a = new T[outer][];
        for (int i = 0; i < outer; i++) a[i] = new T[inner];
        return a;
    }
}

/// <summary>Layer numbers given for 32-layer Llama in the papers, scaled to a model's depth.</summary>
public static class Depth
{
    /// <summary>round(layerOf32 · layers / 32), half away from zero.</summary>
    public static int Scale(int layerOf32, int layers) =>
        (int)Math.Round(layerOf32 * layers / 32.0, MidpointRounding.AwayFromZero);

    /// <summary>Dense leading layers for a model of `layers` (2 of 32 by default), at least 1 and below `layers`
    /// where the model has more than one layer.</summary>
    public static int DenseLayers(int layers, int of32 = 2) => Math.Clamp(Scale(of32, layers), Math.Min(1, layers - 1), Math.Max(0, layers - 1));
}
