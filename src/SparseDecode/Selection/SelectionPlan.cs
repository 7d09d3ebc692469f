using SparseDecode.Model;
using SparseDecode.Cpu;

namespace SparseDecode.Selection;

/// <summary>A sparse-attention method written once, as a fixed sequence of <see cref="ISelectionOps"/> per layer
/// over buffers it declares in its <see cref="Layout"/>. The sequence may depend on the layer and the method's
/// settings, never on data: every data-dependent choice is a flag an operation writes and a later one reads. So the
/// CPU runs the plan on spans (the reference, <see cref="SpanPlanOps"/>) and the GPU captures the same plan into its
/// step graph, and both compute the same algorithm. One plan object serves every sequence; state lives in the
/// backend's buffers.</summary>
public abstract class SelectionPlan
{
    protected SelectionPlan(string name, ModelConfig config, Budget budget, SelectionGranularity granularity, int maxContext)
    {
        Name = name;
        Budget = budget;
        Granularity = granularity;
        Layers = config.NumLayers;
        Heads = granularity == SelectionGranularity.QueryHead ? config.NumHeads : config.NumKvHeads;
        MaxContext = Math.Max(1, maxContext);
        Layout = new PlanLayout(Heads, Layers, MaxContext);
    }

    public string Name { get; }
    public Budget Budget { get; }
    public SelectionGranularity Granularity { get; }
    public int Layers { get; }
    /// <summary>Selection heads: query heads or KV heads per the granularity.</summary>
    public int Heads { get; }
    /// <summary>The longest context the buffers are declared for.</summary>
    public int MaxContext { get; }
    public PlanLayout Layout { get; }

    /// <summary>Refuses a plan made for another model shape, or whose buffers are declared for fewer positions than a
    /// sequence of `capacity` needs: the engines call it before a sequence allocates anything.</summary>
    public void CheckFits(ModelConfig config, int capacity)
    {
        int heads = Granularity == SelectionGranularity.QueryHead ? config.NumHeads : config.NumKvHeads;
        if (Layers != config.NumLayers || Heads != heads)
            throw new ArgumentException(
                $"The {Name} plan was made for a model of {Layers} layers and {Heads} selection heads, not this one of {config.NumLayers} layers and {heads}.");
        if (capacity > MaxContext)
            throw new ArgumentException($"The {Name} plan holds contexts up to {MaxContext} positions but the sequence needs {capacity}.");
    }

    /// <summary>Whether the plan carries state from one decode step to the next: per-layer buffers (LFPS's history,
    /// PrHS's and HShare's retrieved sets and the steps they were retrieved at). Without them every list is
    /// recomputed at every step from the cache alone (TidalDecode, Quest, StreamingLLM, oracle).</summary>
    public bool CarriesState
    {
        get
        {
            // a loop, not LINQ: a speculative round asks at its start, and a warm round allocates nothing
            var buffers = Layout.Buffers;
            for (int i = 0; i < buffers.Count; i++)
                if (buffers[i].PerLayer) return true;
            return false;
        }
    }

    /// <summary>KV-cache correction (TidalDecode's): after this many sparse decode steps the decode loop runs the
    /// tokens they decoded again densely, with the next token, as one pass (<see cref="Engine.Generator"/>), so their
    /// keys and values become dense attention's and the next token's logits are dense decoding's. 0: never.</summary>
    public virtual int CacheCorrection => 0;

    /// <summary>Whether the plan reads Quest's per-page key summaries (the backend keeps them current).</summary>
    public virtual bool ReadsPageSummaries => false;

    /// <summary>Most positions the budget keeps at the longest context: the capacity of a selection list.</summary>
    protected int MaxKeep => Budget.Resolve(MaxContext);

    /// <summary>Issues the layer's operations; returns the list the layer attends to, or null for every position.</summary>
    public abstract IndexSet? Layer(ISelectionOps ops, int layer);
}
