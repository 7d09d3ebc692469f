using SparseDecode.Selection;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;

namespace SparseDecode.Cuda.Selection;

/// <summary>One selection plan as an engine runs it for every sequence that decodes through it: the plan's
/// operations and scratch sized for a step's rows (<see cref="PlanAttention"/>), and the state the plan carries from
/// step to step (<see cref="GpuPlanOps.CarriedState"/>) kept per sequence, by cache slot, in one pool. A step
/// gathers its rows' state from the pool before the first layer and scatters it back after the last, inside the
/// captured graph (the rows' slots are device data: <see cref="GpuKvCache.RowSlots"/>), so sequences join and leave
/// between steps without re-capture, and a sequence's state never depends on which row it had.</summary>
internal sealed class PlanGroup : IDisposable
{
    private readonly SelectionKernels _kernels;
    private readonly DeviceBuffer _pool, _table;
    private readonly long[] _offsets, _words;
    private readonly uint[] _fresh;
    private readonly long _slotWords, _longest;

    /// <param name="id">The group's place in a step: groups run in increasing id after the dense rows.</param>
    /// <param name="rows">Rows a step may give the group.</param>
    /// <param name="slots">Cache slots, the places in the pool.</param>
    public PlanGroup(int id, GpuModel model, GpuKvCache cache, SelectionPlan plan, int rows, int slots, SelectionKernels kernels, CudaStream s)
    {
        Id = id;
        _kernels = kernels;
        Attention = new PlanAttention(model, cache, plan, rows, kernels);
        try
        {
            Attention.Reset(s);
            var carried = Attention.Ops.CarriedState().ToArray();
            _words = carried.Select(c => c.RowBytes / 4).ToArray();
            _fresh = carried.Select(c => c.Fresh).ToArray();
            _offsets = new long[carried.Length];
            for (int b = 1; b < carried.Length; b++) _offsets[b] = _offsets[b - 1] + _words[b - 1];
            _slotWords = _offsets[^1] + _words[^1];
            _longest = _words.Max();
            var table = new ulong[3 * carried.Length];
            for (int b = 0; b < carried.Length; b++)
                (table[b], table[carried.Length + b], table[2 * carried.Length + b]) = (carried[b].Buffer.Pointer, (ulong)_words[b], (ulong)_offsets[b]);
            _table = model.Device.Upload<ulong>(table);
            _pool = model.Device.Allocate((long)slots * _slotWords * 4);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public int Id { get; }
    public PlanAttention Attention { get; }
    public SelectionPlan Plan => Attention.Plan;
    /// <summary>Live sequences decoding through this group.</summary>
    public int Sequences { get; set; }
    /// <summary>Bytes of state each sequence keeps in the pool.</summary>
    public long StateBytes => _slotWords * 4;
    /// <summary>The engine's number of the last step that ran rows of this group (its buffers hold that step's rows).</summary>
    public long LastStep { get; set; } = -1;

    /// <summary>Slot `slot`'s state as a new sequence's (empty lists, zero counters), in stream order.</summary>
    public void ResetSlot(int slot, CudaStream s)
    {
        for (int b = 0; b < _words.Length; b++) _pool.Fill32(_fresh[b], _words[b], s, (slot * _slotWords + _offsets[b]) * 4);
    }

    /// <summary>Queues the copy of slot `slot`'s state into place `index` of `checkpoints` (at least index + 1 times
    /// <see cref="StateBytes"/>), or (restore) back from there.</summary>
    public void Checkpoint(int slot, DeviceBuffer checkpoints, int index, bool restore, CudaStream s)
    {
        ulong pool = _pool.At(slot * StateBytes), saved = checkpoints.At(index * StateBytes);
        if ((index + 1) * StateBytes > checkpoints.Bytes) throw new ArgumentOutOfRangeException(nameof(index), $"Checkpoint {index} of a buffer of {checkpoints.Bytes / StateBytes}.");
        if (restore) s.CopyAsync(pool, saved, StateBytes);
        else s.CopyAsync(saved, pool, StateBytes);
    }

    /// <summary>Queues the copy of `rows` sequences' state (their slots at device address `slots`) into the group's
    /// rows 0 .. rows − 1.</summary>
    public void Gather(ulong slots, int rows, CudaStream s) =>
        _kernels.StateCopy(_table, _words.Length, _longest, slots, rows, _pool, _slotWords, toPool: false, s);

    /// <summary>Queues the copy of the group's rows 0 .. rows − 1 back to their sequences' places.</summary>
    public void Scatter(ulong slots, int rows, CudaStream s) =>
        _kernels.StateCopy(_table, _words.Length, _longest, slots, rows, _pool, _slotWords, toPool: true, s);

    public void Dispose()
    {
        Attention.Dispose();
        _table?.Dispose();
        _pool?.Dispose();
    }
}
