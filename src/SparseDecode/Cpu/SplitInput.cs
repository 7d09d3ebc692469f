using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The inputs of a region's products (one per row of a decode step) split once into their even and odd
/// entries for <see cref="MatVec.Rows"/>, in a buffer kept between calls that grows by doubling.</summary>
public sealed unsafe class SplitInput
{
    private float[] _buffer = [];
    private int _cols, _batch;

    public float** X { get; private set; }

    /// <summary>Splits the `batch` inputs x[b] (pinned, `cols` floats each) for the products of one region.</summary>
    public void Make(float** x, int batch, int cols)
    {
        long need = (long)batch * cols;
        if (_buffer.Length < need) _buffer = new float[Math.Max(need, 2L * _buffer.Length)];
        X = x;
        _cols = cols;
        _batch = batch;
        fixed (float* s = _buffer)
            for (int b = 0; b < batch; b++)
                MatVec.Deinterleave(x[b], cols, s + (long)b * cols, s + (long)b * cols + cols / 2);
    }

    /// <summary>y[b] (=|+=) W[r0..r1)·x[b] (+ bias) for every input.</summary>
    public void Rows(in Model.TensorView w, int r0, int r1, float** y, float[]? bias, bool accumulate)
    {
        fixed (float* s = _buffer)
            MatVec.Rows(w.Type, w.Data, w.Cols, X, s, _batch, r0, r1, y, bias, accumulate);
    }
}
