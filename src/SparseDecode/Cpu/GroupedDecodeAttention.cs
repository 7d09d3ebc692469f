using SparseDecode.Selection;
using SparseDecode.Engine;
using SparseDecode.Model;

namespace SparseDecode.Cpu;

/// <summary>A decode step's attention for all query heads of one layer, grouped by KV head (<see cref="GroupAttention"/>):
/// dense over every position, or sparse over one index list per KV head. Each head's positions are split into
/// parts so that there are about two tasks per core even when there are few KV heads (the bundled model has 2,
/// Llama-3-8B 8), the parts run in parallel and combine exactly. Buffers are allocated up front and grow by
/// doubling, and the parallel body is bound once (<see cref="ParallelWork"/>): a step allocates nothing.</summary>
public sealed unsafe class GroupedDecodeAttention
{
    /// <summary>No part is made shorter than this many positions: below it the split costs more than it saves.</summary>
    public const int MinPartLength = 512;

    private readonly int _queryHeads, _kvHeads, _group, _d, _maxParts;
    private readonly float[] _max, _sum, _partial;
    private readonly Tasks _body;
    private float[] _scores;
    private long _stride;

    // the current call's arguments, read by _body
    private KvCache _cache = null!;
    private float[] _q = [], _att = [];
    private LayerSelection? _selection;
    private int _layer, _count, _parts;
    private float _scale;

    public GroupedDecodeAttention(int queryHeads, int kvHeads, int headDim, int capacity)
    {
        if (queryHeads % kvHeads != 0) throw new ArgumentException($"{queryHeads} query heads do not divide into {kvHeads} KV heads.");
        _queryHeads = queryHeads;
        _kvHeads = kvHeads;
        _group = queryHeads / kvHeads;
        _d = headDim;
        _maxParts = Math.Max(1, (2 * WorkerPool.Shared.Threads + kvHeads - 1) / kvHeads);
        int slots = kvHeads * _maxParts * _group;
        _max = new float[slots];
        _sum = new float[slots];
        _partial = new float[slots * headDim];
        _stride = Math.Max(1, Math.Min(capacity, 4096));
        _scores = new float[_stride * queryHeads];
        _body = new Tasks(this);
    }

    /// <summary>Parts per KV head for `count` positions (dense) or list entries (sparse).</summary>
    public int PartsFor(int count) => Math.Clamp(count / MinPartLength, 1, _maxParts);

    /// <summary>att (query heads × d) = attention of q (query heads × d, after RoPE) over positions [0, n) of the
    /// layer, or over `selection`'s per-KV-head lists when it is sparse (KvHead granularity only).</summary>
    public void Run(KvCache cache, int layer, float[] q, float[] att, int n, float scale, LayerSelection? selection = null)
    {
        WorkerPool.Shared.Run(_body, Prepare(cache, layer, q, att, n, scale, selection));
        Finish();
    }

    /// <summary>Binds a call's arguments (as <see cref="Run"/> takes them) and sizes its parts; returns its task
    /// count, KV heads × <see cref="_parts"/>, for <see cref="RunTask"/>, then <see cref="Finish"/> combines.</summary>
    private int Prepare(KvCache cache, int layer, float[] q, float[] att, int n, float scale, LayerSelection? selection)
    {
        bool sparse = selection is { Dense: false };
        if (sparse && selection!.Granularity != SelectionGranularity.KvHead)
            throw new ArgumentException("Grouped attention takes one index list per KV head.");
        int longest = n;
        if (sparse)
        {
            longest = 0;
            for (int h = 0; h < _kvHeads; h++) longest = Math.Max(longest, selection!.Indices(h).Length);
        }
        if (_stride < longest)
        {
            _stride = Math.Max(longest, 2 * _stride);
            _scores = new float[_stride * _queryHeads];
        }
        _cache = cache;
        _layer = layer;
        _q = q;
        _att = att;
        _count = n;
        _scale = scale;
        _selection = sparse ? selection : null;
        _parts = PartsFor(longest);
        return _kvHeads * _parts;
    }

    /// <summary>Combines the parts of the bound call into att.</summary>
    private void Finish()
    {
        fixed (float* mx = _max, sm = _sum, pt = _partial, o = _att)
            for (int h = 0; h < _kvHeads; h++)
            {
                int first = h * _parts * _group;
                GroupAttention.Combine(_parts, _group, _d, mx + first, sm + first, pt + (long)first * _d, o + (long)h * _group * _d);
            }
    }

    /// <summary>Dense attention of the rows of one sequence at consecutive positions (a speculative verification
    /// pass, <see cref="DecodeBatch.AddNext"/>), each through its own workspace's instance, in one parallel region
    /// whose task (KV head, part) runs that part for every row in turn: the rows' parts of a head cover nearly the
    /// same positions, so each key and value row is read from memory about once for all rows, and every row
    /// computes exactly what <see cref="Run"/> computes for it alone (the same parts, sums and combination).
    /// Bound once per batch and reused: a call allocates nothing once it has held as many rows.</summary>
    internal sealed class RowsWork : ParallelWork
    {
        private GroupedDecodeAttention[] _rows = [];
        private int _count, _parts;

        /// <summary>Layer `layer`'s dense attention for every row of `batch` (q and att its workspace's), row b over
        /// positions [0, its position].</summary>
        public void Run(DecodeBatch batch, int layer, float scale)
        {
            _count = batch.Count;
            if (_rows.Length < _count) Array.Resize(ref _rows, Math.Max(_count, 2 * _rows.Length));
            _parts = 0;
            int kvHeads = 0;
            for (int b = 0; b < _count; b++)
            {
                var ws = batch.Workspace(b);
                var g = _rows[b] = ws.Grouped;
                g.Prepare(batch.Cache(b), layer, ws.Q, ws.Att, batch.Position(b) + 1, scale, null);
                _parts = Math.Max(_parts, g._parts);
                kvHeads = g._kvHeads;
            }
            try
            {
                WorkerPool.Shared.Run(this, kvHeads * _parts);
                for (int b = 0; b < _count; b++) _rows[b].Finish();
            }
            finally
            {
                Array.Clear(_rows, 0, _count);
            }
        }

        public override void Execute(int item, int worker)
        {
            int h = item / _parts, r = item % _parts;
            for (int b = 0; b < _count; b++)
            {
                var g = _rows[b];
                if (r < g._parts) g.RunTask(h * g._parts + r);
            }
        }
    }

    private sealed class Tasks(GroupedDecodeAttention owner) : ParallelWork
    {
        public override void Execute(int item, int worker) => owner.RunTask(item);
    }

    private void RunTask(int task)
    {
        int h = task / _parts, r = task % _parts;
        int slot = (h * _parts + r) * _group;
        int total = _selection is null ? _count : _selection.Indices(h).Length;
        int start = (int)((long)total * r / _parts), end = (int)((long)total * (r + 1) / _parts);
        fixed (float* q = _q, sc = _scores, mx = _max, sm = _sum, pt = _partial)
        {
            float* qh = q + (long)h * _group * _d, scores = sc + (long)h * _group * _stride + start;
            float* part = pt + (long)slot * _d;
            if (_selection is null)
                GroupAttention.Range(_cache, _layer, h, qh, _group, start, end, _scale, scores, _stride, mx + slot, sm + slot, part);
            else
                GroupAttention.Indexed(_cache, _layer, h, qh, _group, _selection.Indices(h)[start..end], _scale, scores, _stride,
                    mx + slot, sm + slot, part);
        }
    }
}
