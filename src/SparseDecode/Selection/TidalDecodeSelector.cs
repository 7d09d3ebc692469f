using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>TidalDecode (Yang et al., 2024): position-persistent sparse attention. Layers below `start` attend
/// densely; the token-selection layer `start` and the re-selection layer `reselect` score every key, keep each
/// head's top-k positions and themselves attend densely (as the public code does); every other layer reuses the
/// positions last chosen in this step, so full scoring happens in two layers only.</summary>
public sealed class TidalDecodeSelector : SelectorBase
{
    private readonly int[][] _positions;
    private readonly int[] _counts;
    private float[] _scores = new float[1024];

    public TidalDecodeSelector(ModelConfig config, Budget budget, int start, int? reselect,
        SelectionGranularity granularity = SelectionGranularity.QueryHead)
        : base("tidal", config, budget, granularity)
    {
        if (start < 0 || start >= config.NumLayers)
            throw new ArgumentException($"The token-selection layer must be in [0, {config.NumLayers}), got {start}.", nameof(start));
        if (reselect is int r && (r <= start || r >= config.NumLayers))
            throw new ArgumentException($"The re-selection layer must come after the selection layer {start} and below {config.NumLayers}, got {r}.", nameof(reselect));
        Start = start;
        Reselect = reselect;
        _positions = Jagged<int>(Heads, 256);
        _counts = new int[Heads];
    }

    public int Start { get; }
    public int? Reselect { get; }

    /// <summary>Defaults of the public code for 32-layer Llama (sparse from layer 2, re-selection at 13), scaled to
    /// the model's depth; at least layer 1, and the two layers distinct.</summary>
    public static (int Start, int? Reselect) DefaultLayers(int layers)
    {
        int start = Math.Max(1, Depth.Scale(2, layers));
        int reselect = Math.Max(start + 1, Depth.Scale(13, layers));
        return (start, reselect < layers ? reselect : null);
    }

    protected override void SelectLayer(ISelectionBackend backend, LayerSelection selection)
    {
        int layer = backend.Layer, n = backend.Context, k = Budget.Resolve(n);
        if (layer < Start || k >= n)
        {
            selection.Dense = true;
            return;
        }
        if (layer == Start || layer == Reselect)
        {
            Ensure(ref _scores, n);
            var scores = _scores.AsSpan(0, n);
            for (int h = 0; h < Heads; h++)
            {
                backend.ScoreAll(h, Granularity, scores);
                Ensure(ref _positions[h], k);
                _counts[h] = backend.TopK(scores, default, k, _positions[h]);
            }
            selection.Dense = true;
            return;
        }
        for (int h = 0; h < Heads; h++)
        {
            _positions[h].AsSpan(0, _counts[h]).CopyTo(selection.Buffer(h));
            selection.SetCount(h, _counts[h]);
        }
    }
}
