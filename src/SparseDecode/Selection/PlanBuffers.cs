namespace SparseDecode.Selection;

/// <summary>A handle to per-(sequence, selection head) position lists owned by the backend that runs a plan:
/// `Depth` lists of up to `Capacity` positions each, with a count and a stamp (the position of the decode step that
/// wrote the list) per list. A plan names buffers; it never reads them.</summary>
public readonly record struct IndexSet(int Id);

/// <summary>A handle to per-(sequence, selection head) rows of f32 scores owned by the backend.</summary>
public readonly record struct ScoreSet(int Id);

/// <summary>A handle to one int per (sequence, selection head): a decision the next operations read, or a counter.</summary>
public readonly record struct FlagSet(int Id);

/// <summary>Which heads an operation acts on: all, or those whose flag is (or is not) non-zero. This is how a plan
/// makes a data-dependent choice without reading anything back: the choice is a flag the next operation reads.</summary>
public readonly record struct HeadMask(FlagSet Flags, HeadMask.Kind When)
{
    public enum Kind { All, Set, Clear }

    public static HeadMask All => default;
    public static HeadMask Where(FlagSet flags) => new(flags, Kind.Set);
    public static HeadMask WhereNot(FlagSet flags) => new(flags, Kind.Clear);

    public bool Admits(int flag) => When == Kind.All || (When == Kind.Set) == (flag != 0);
}

public enum PlanBufferKind { Indices, Scores, Flags }

/// <summary>One buffer a plan declares: its kind, entries per head, lists per head (indices), and whether each
/// layer has its own copy (state carried from step to step at that layer) or the layers share one.</summary>
public readonly record struct PlanBuffer(string Name, PlanBufferKind Kind, int Capacity, int Depth, bool PerLayer);

/// <summary>The buffers of a plan, declared once when the plan is made for a model and a longest context; a
/// backend allocates them per sequence (the CPU, growing with the context) or for every row of a batch (the GPU,
/// at their capacity).</summary>
public sealed class PlanLayout(int heads, int layers, int maxContext)
{
    private readonly List<PlanBuffer> _buffers = [];

    public int Heads { get; } = heads;
    public int Layers { get; } = layers;
    public int MaxContext { get; } = maxContext;
    public IReadOnlyList<PlanBuffer> Buffers => _buffers;

    public IndexSet Indices(string name, int capacity, bool perLayer = false, int depth = 1) =>
        new(Add(new PlanBuffer(name, PlanBufferKind.Indices, Clamp(capacity), depth, perLayer)));

    public ScoreSet Scores(string name, int capacity, bool perLayer = false) =>
        new(Add(new PlanBuffer(name, PlanBufferKind.Scores, Clamp(capacity), 1, perLayer)));

    public FlagSet Flags(string name, bool perLayer = false) =>
        new(Add(new PlanBuffer(name, PlanBufferKind.Flags, 1, 1, perLayer)));

    private int Clamp(int capacity) => Math.Clamp(capacity, 1, Math.Max(1, MaxContext));

    private int Add(PlanBuffer b)
    {
        if (b.Depth < 1) throw new ArgumentOutOfRangeException(nameof(b), $"Buffer '{b.Name}' needs at least one list per head.");
        _buffers.Add(b);
        return _buffers.Count - 1;
    }
}
