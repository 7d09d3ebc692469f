using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>StreamingLLM (Xiao et al., 2023): the first `sinks` positions (attention sinks) and the most recent
/// positions filling the rest of the budget. Positional only: nothing is scored, every head and layer gets the same
/// set, made once per step at layer 0.</summary>
public sealed class StreamingLlmPlan : SelectionPlan
{
    private readonly IndexSet _window;

    public StreamingLlmPlan(ModelConfig config, Budget budget, int sinks, SelectionGranularity granularity, int maxContext = 0)
        : base("streaming", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        Sinks = sinks;
        _window = Layout.Indices("window", MaxKeep);
    }

    public int Sinks { get; }

    public override IndexSet? Layer(ISelectionOps ops, int layer)
    {
        if (layer == 0) ops.Window(Sinks, Budget, _window);
        return _window;
    }
}
