using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SparseDecode.Selection;
using SparseDecode.Engine;
using SparseDecode.Model;

namespace SparseDecode.Cpu;

/// <summary>The rows of one batched decode step (<see cref="Transformer.Decode(DecodeBatch, IAttentionObserver?)"/>):
/// for each sequence its next token, KV cache, workspace and plan state, and the tables of pointers to the rows'
/// buffers that the step's products read and write (the workspaces' buffers are pinned, so a pointer stays
/// valid). Rows of one sequence at consecutive positions (<see cref="AddNext"/>) make a dense multi-token pass
/// whose every row is the decode step of that token: speculative decoding's verification. Kept between steps and
/// grown by doubling: once it has held as many rows, filling and running it allocates nothing. One step at a time
/// uses a batch.</summary>
public sealed unsafe class DecodeBatch
{
    /// <summary>The workspace buffers the products touch, one pointer table each.</summary>
    internal enum Buffer { X, Xn, Q, K, V, Att, Gate, Up, Logits }

    private const int Buffers = 9;

    private int[] _tokens;
    // a row's position past its cache's length: 0, or one more than the row before it for AddNext's rows
    private int[] _offsets;
    private KvCache?[] _caches;
    private DecodeWorkspace?[] _workspaces;
    private SpanPlanOps?[] _plans;
    // Buffers tables of Capacity pointers each, on the pinned heap so that the products can keep raw pointers
    private nint[] _tables;

    public DecodeBatch(int capacity = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _tokens = new int[capacity];
        _offsets = new int[capacity];
        _caches = new KvCache?[capacity];
        _workspaces = new DecodeWorkspace?[capacity];
        _plans = new SpanPlanOps?[capacity];
        _tables = GC.AllocateArray<nint>(Buffers * capacity, pinned: true);
    }

    public int Count { get; private set; }
    public int Capacity => _tokens.Length;

    /// <summary>Whether some row continues the row before it (<see cref="AddNext"/>): the step then appends every
    /// row's keys and values before any row attends.</summary>
    internal bool HasRuns { get; private set; }

    /// <summary>The step's products, bound once here (no allocation per step).</summary>
    internal LinearWork Linear { get; } = new();
    internal GatedMlpWork Mlp { get; } = new();
    internal Transformer.RowAttentionJob Attention { get; } = new();
    internal GroupedDecodeAttention.RowsWork RunAttention { get; } = new();

    /// <summary>Adds a row: `token` at position cache.Length of a sequence with its own cache, workspace (made
    /// for that cache) and plan state (null: dense attention). A sequence may appear once per batch.</summary>
    public void Add(int token, KvCache cache, DecodeWorkspace workspace, SpanPlanOps? plan)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(workspace);
        if (HasRuns) throw new InvalidOperationException("A batch of one sequence's consecutive positions holds no other sequence.");
        for (int i = 0; i < Count; i++)
            if (ReferenceEquals(_caches[i], cache) || ReferenceEquals(_workspaces[i], workspace))
                throw new ArgumentException($"Row {Count} repeats the sequence of row {i}: a sequence decodes one token per step.");
        Append(token, cache, workspace, plan, 0);
    }

    /// <summary>Adds a row that continues the last row's sequence: `token` at the position after that row's, with
    /// its own workspace (made for the same cache), attending densely to every position up to its own — those of
    /// the rows before it included. Such a batch holds that one dense sequence only (no plan, no other sequence).
    /// The row's logits equal, bit for bit, a dense decode step of `token` after the rows before it.</summary>
    public void AddNext(int token, DecodeWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        if (Count == 0) throw new InvalidOperationException("A continuing row needs a row before it.");
        int last = Count - 1;
        if (Count > 1 && !HasRuns) throw new InvalidOperationException("A batch of one sequence's consecutive positions holds no other sequence.");
        if (_plans[last] is not null) throw new InvalidOperationException("Rows of one sequence at consecutive positions attend densely; the row before has a plan.");
        for (int i = 0; i < Count; i++)
            if (ReferenceEquals(_workspaces[i], workspace))
                throw new ArgumentException($"Row {Count} repeats the workspace of row {i}: each row needs its own.");
        HasRuns = true;
        Append(token, _caches[last]!, workspace, null, _offsets[last] + 1);
    }

    private void Append(int token, KvCache cache, DecodeWorkspace workspace, SpanPlanOps? plan, int offset)
    {
        if (Count == Capacity) Grow();
        int b = Count++;
        (_tokens[b], _offsets[b], _caches[b], _workspaces[b], _plans[b]) = (token, offset, cache, workspace, plan);
        SetTable(Buffer.X, b, workspace.X);
        SetTable(Buffer.Xn, b, workspace.Xn);
        SetTable(Buffer.Q, b, workspace.Q);
        SetTable(Buffer.K, b, workspace.K);
        SetTable(Buffer.V, b, workspace.V);
        SetTable(Buffer.Att, b, workspace.Att);
        SetTable(Buffer.Gate, b, workspace.Gate);
        SetTable(Buffer.Up, b, workspace.Up);
        SetTable(Buffer.Logits, b, workspace.Logits);
    }

    /// <summary>Empties the batch, dropping its references to the sequences' caches, workspaces and plans.</summary>
    public void Clear()
    {
        Array.Clear(_caches, 0, Count);
        Array.Clear(_workspaces, 0, Count);
        Array.Clear(_plans, 0, Count);
        Count = 0;
        HasRuns = false;
    }

    internal int Token(int row) => _tokens[row];
    /// <summary>The position the row's token goes at.</summary>
    internal int Position(int row) => _caches[row]!.Length + _offsets[row];
    internal KvCache Cache(int row) => _caches[row]!;
    internal DecodeWorkspace Workspace(int row) => _workspaces[row]!;
    internal SpanPlanOps? Plan(int row) => _plans[row];

    /// <summary>The rows' pointers to one buffer (Count entries), valid until the batch grows.</summary>
    internal float** Table(Buffer buffer) =>
        (float**)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_tables)) + (int)buffer * Capacity;

    private void SetTable(Buffer buffer, int row, float[] array) =>
        Table(buffer)[row] = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));

    private void Grow()
    {
        int old = Capacity, capacity = 2 * old;
        Array.Resize(ref _tokens, capacity);
        Array.Resize(ref _offsets, capacity);
        Array.Resize(ref _caches, capacity);
        Array.Resize(ref _workspaces, capacity);
        Array.Resize(ref _plans, capacity);
        var tables = GC.AllocateArray<nint>(Buffers * capacity, pinned: true);
        for (int t = 0; t < Buffers; t++) Array.Copy(_tables, t * old, tables, t * capacity, old);
        _tables = tables;
    }
}
