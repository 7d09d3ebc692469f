using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>What one layer attends to at one decode step: every position (Dense), or per head a list of
/// positions in ascending order. Buffers are allocated once per sequence and reused every step.</summary>
public sealed class LayerSelection
{
    private readonly int[][] _indices;
    private readonly int[] _counts;

    public LayerSelection(int heads, int capacity, SelectionGranularity granularity)
    {
        Granularity = granularity;
        _indices = new int[heads][];
        for (int h = 0; h < heads; h++) _indices[h] = new int[capacity];
        _counts = new int[heads];
    }

    public SelectionGranularity Granularity { get; }
    public int Heads => _indices.Length;
    public int Capacity => _indices[0].Length;

    /// <summary>Attend to all positions: no index lists are used.</summary>
    public bool Dense { get; set; }

    /// <summary>Writable buffer for a head's indices; call SetCount after filling it.</summary>
    public Span<int> Buffer(int head) => _indices[head];

    public void SetCount(int head, int count) => _counts[head] = count;

    public ReadOnlySpan<int> Indices(int head) => new(_indices[head], 0, _counts[head]);

    public int Count(int head) => _counts[head];

    public void CopyFrom(LayerSelection other)
    {
        Dense = other.Dense;
        for (int h = 0; h < Heads; h++)
        {
            other.Indices(h).CopyTo(_indices[h]);
            _counts[h] = other._counts[h];
        }
    }
}
