using SparseDecode.Cpu;
using SparseDecode.Engine;

namespace SparseDecode.Evaluation;

/// <summary>Records the dense attention of the heads of chosen layers over consecutive decode steps, in two views
/// per head: the whole context max-pooled into fixed bins (vertical lines: positions every step returns to) and
/// the most recent keys at full resolution (slash lines: the same offset behind each new query). It also scores
/// each head by the attention mass its 64 largest keys hold outside the first four (attention-sink) and the 16
/// most recent positions, so that a head with long-range structure, not a previous-token head, can be shown.</summary>
public sealed class AttentionPatternRecorder : IAttentionObserver
{
    private readonly HashSet<int> _layers;
    private readonly int _heads, _bins, _positions, _windowStart;
    private readonly Dictionary<(int Layer, int Head), HeadRecord> _records = new();
    private float[] _sorted = [];

    /// <param name="positions">Positions the last recorded step sees (prompt + steps): the binned view's width.</param>
    /// <param name="windowStart">First key position of the full-resolution view.</param>
    public AttentionPatternRecorder(IEnumerable<int> layers, int heads, int positions, int bins, int windowStart)
    {
        _layers = layers.ToHashSet();
        _heads = heads;
        _positions = positions;
        _bins = Math.Min(bins, positions);
        _windowStart = Math.Clamp(windowStart, 0, positions - 1);
    }

    public int Bins => _bins;
    public int Positions => _positions;
    public int WindowStart => _windowStart;

    public sealed class HeadRecord
    {
        public List<float[]> Binned { get; } = [];
        public List<float[]> Window { get; } = [];
        public double Concentration { get; set; }
    }

    public IReadOnlyDictionary<(int Layer, int Head), HeadRecord> Records => _records;

    public void OnHead(in HeadObservation o)
    {
        if (!_layers.Contains(o.Layer)) return;
        if (!_records.TryGetValue((o.Layer, o.Head), out var r)) _records[(o.Layer, o.Head)] = r = new HeadRecord();
        var p = o.DenseProbabilities;
        int n = Math.Min(p.Length, _positions);
        var binned = new float[_bins];
        for (int i = 0; i < n; i++)
        {
            int b = (int)((long)i * _bins / _positions);
            if (p[i] > binned[b]) binned[b] = p[i];
        }
        r.Binned.Add(binned);
        var window = new float[_positions - _windowStart];
        for (int i = _windowStart; i < n; i++) window[i - _windowStart] = p[i];
        r.Window.Add(window);

        int skip = Math.Min(4, p.Length), end = Math.Max(skip, p.Length - 16);
        int m = end - skip;
        if (_sorted.Length < m) _sorted = new float[m];
        var s = _sorted.AsSpan(0, m);
        p[skip..end].CopyTo(s);
        s.Sort();
        double top = 0;
        for (int i = Math.Max(0, m - 64); i < m; i++) top += s[i];
        r.Concentration += top;
    }

    public void OnLayer(int layer, int context, long keysScored, bool dense, double selectSeconds, double attendSeconds) { }

    /// <summary>The head with the most concentrated attention beyond the sink positions.</summary>
    public (int Layer, int Head) MostStructured() =>
        _records.OrderByDescending(kv => kv.Value.Concentration / Math.Max(1, kv.Value.Binned.Count)).First().Key;

    public HeatmapData Export(int layer, int head, int promptLength, string model, string rule)
    {
        var r = _records[(layer, head)];
        return new HeatmapData
        {
            Model = model,
            Layer = layer,
            Head = head,
            PromptTokens = promptLength,
            Positions = _positions,
            Bins = _bins,
            WindowStart = _windowStart,
            Binned = r.Binned.ToArray(),
            Window = r.Window.ToArray(),
            Concentration = r.Concentration / Math.Max(1, r.Binned.Count),
            Selection = rule,
        };
    }
}

/// <summary>One head's recorded attention over decode steps, as the heat map draws it (kept as heatmap.json).</summary>
public sealed record HeatmapData
{
    public required string Model { get; init; }
    public required int Layer { get; init; }
    public required int Head { get; init; }
    public required int PromptTokens { get; init; }
    public required int Positions { get; init; }
    public required int Bins { get; init; }
    public required int WindowStart { get; init; }
    /// <summary>[step][bin]: the largest probability within each bin of positions.</summary>
    public required float[][] Binned { get; init; }
    /// <summary>[step][position − WindowStart]: probabilities of the most recent keys.</summary>
    public required float[][] Window { get; init; }
    public double Concentration { get; init; }
    public string Selection { get; init; } = "";
}
