using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>A product's input x split once into its even and odd entries for <see cref="MatVec.Rows"/>, in a buffer
/// kept between calls.</summary>
public sealed unsafe class SplitInput
{
    private float[] _buffer = [];
    private int _cols;

    public float* X { get; private set; }

    /// <summary>Splits x (pinned, `cols` floats) for the products of one region.</summary>
    public void Make(float* x, int cols)
    {
        if (_buffer.Length < cols) _buffer = new float[cols];
        X = x;
        _cols = cols;
        fixed (float* s = _buffer) MatVec.Deinterleave(x, cols, s, s + cols / 2);
    }

    /// <summary>y (=|+=) W[r0..r1)·x (+ bias) with this input.</summary>
    public void Rows(in Model.TensorView w, int r0, int r1, float* y, float[]? bias, bool accumulate)
    {
        fixed (float* s = _buffer)
            MatVec.Rows(w.Type, w.Data, w.Cols, X, s, s + _cols / 2, r0, r1, y, bias, accumulate);
    }
}
