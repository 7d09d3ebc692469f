using SparseDecode.Model;
using SparseDecode.Cpu;

namespace SparseDecode.Selection;

/// <summary>TidalDecode (Yang et al., 2024): position-persistent sparse attention. Layers below `start` attend
/// densely; the token-selection layer `start` and the re-selection layer `reselect` score every key, keep each
/// head's top-k positions and themselves attend densely (as the public code does); every other layer reuses the
/// positions last chosen in this step, so full scoring happens in two layers only. With `correction` = T > 0, the
/// paper's KV-cache correction: every T sparse steps the decode loop refills the keys and values of the tokens they
/// decoded with full attention (<see cref="SelectionPlan.CacheCorrection"/>).</summary>
public sealed class TidalDecodePlan : SelectionPlan
{
    private readonly ScoreSet _scores;
    private readonly IndexSet _positions;

    public TidalDecodePlan(ModelConfig config, Budget budget, int start, int? reselect, SelectionGranularity granularity, int maxContext = 0,
        int correction = 0)
        : base("tidal", config, budget, granularity, maxContext > 0 ? maxContext : config.MaxPositions)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(correction);
        CacheCorrection = correction;
        if (start < 0 || start >= config.NumLayers)
            throw new ArgumentException($"The token-selection layer must be in [0, {config.NumLayers}), got {start}.", nameof(start));
        if (reselect is int r && (r <= start || r >= config.NumLayers))
            throw new ArgumentException($"The re-selection layer must come after the selection layer {start} and below {config.NumLayers}, got {r}.", nameof(reselect));
        Start = start;
        Reselect = reselect;
        _scores = Layout.Scores("scores", MaxContext);
        _positions = Layout.Indices("positions", MaxKeep);
    }

    public override int CacheCorrection { get; }
    public int Start { get; }
    public int? Reselect { get; }

    public override IndexSet? Layer(ISelectionOps ops, int layer)
    {
        if (layer < Start) return null;
        if (layer == Start || layer == Reselect)
        {
            ops.ScoreAll(_scores);
            ops.TopK(_scores, null, Budget, _positions);
            return null;
        }
        return _positions;
    }
}
