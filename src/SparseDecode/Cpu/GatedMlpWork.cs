using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The first half of a Llama MLP for the rows of a decode step, gate = silu(W_gate x) · (W_up x), as one
/// parallel region: each item computes a block of rows of both products for every row of the step (each weight
/// row read once for all of them: <see cref="MatVec.Rows"/>) and applies SwiGLU to that block while it is in
/// cache. Bound once and reused: a call allocates nothing.</summary>
public sealed unsafe class GatedMlpWork : ParallelWork
{
    private readonly SplitInput _input = new();
    private TensorView _gateW, _upW;
    private float[]? _gateBias, _upBias;
    private float** _gate, _up;
    private int _rowsPerItem, _batch;

    /// <summary>gate[b] (F floats, pinned) = silu(W_gate x[b] + gateBias) · (W_up x[b] + upBias) for each of the
    /// `batch` rows; up[b] (F floats, pinned) is scratch. The tables stay pinned until the call returns.</summary>
    public void Run(WorkerPool pool, in TensorView gateW, in TensorView upW, float[]? gateBias, float[]? upBias, float** x, float** gate, float** up, int batch)
    {
        if (gateW.Rows != upW.Rows || gateW.Cols != upW.Cols) throw new ArgumentException($"{gateW.Name} and {upW.Name} differ in shape.");
        (_gateW, _upW, _gateBias, _upBias) = (gateW, upW, gateBias, upBias);
        _gate = gate;
        _up = up;
        _batch = batch;
        try
        {
            _input.Make(x, batch, gateW.Cols);
            _rowsPerItem = LinearWork.RowsPerItem(gateW.Rows, pool.Threads);
            pool.Run(this, (gateW.Rows + _rowsPerItem - 1) / _rowsPerItem);
        }
        finally
        {
            (_gateW, _upW, _gateBias, _upBias) = (default, default, null, null);
            _gate = null;
            _up = null;
        }
    }

    public override void Execute(int item, int worker)
    {
        int r0 = item * _rowsPerItem, r1 = Math.Min(_gateW.Rows, r0 + _rowsPerItem);
        _input.Rows(_gateW, r0, r1, _gate, _gateBias, accumulate: false);
        _input.Rows(_upW, r0, r1, _up, _upBias, accumulate: false);
        for (int b = 0; b < _batch; b++)
            Activations.SwiGlu(new Span<float>(_gate[b] + r0, r1 - r0), new ReadOnlySpan<float>(_up[b] + r0, r1 - r0));
    }
}
