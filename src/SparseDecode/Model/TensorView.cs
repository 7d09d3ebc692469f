namespace SparseDecode.Model;

/// <summary>A tensor inside a memory-mapped file: the bytes stay where they are, in their stored type.
/// Matrices are row-major [Rows, Cols] as in PyTorch's nn.Linear (out_features, in_features).</summary>
public readonly unsafe struct TensorView(string name, DType type, long[] shape, byte* data)
{
    public string Name { get; } = name;
    public DType Type { get; } = type;
    public long[] Shape { get; } = shape;
    public byte* Data { get; } = data;

    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Shape) n *= d;
            return n;
        }
    }

    public int Rows => (int)Shape[0];
    public int Cols => Shape.Length > 1 ? (int)Shape[1] : 1;

    /// <summary>Row r's bytes (for 2-D tensors).</summary>
    public byte* Row(int r) => Data + (long)r * Cols * Type.SizeInBytes();

    /// <summary>Copies the tensor to f32 (for small tensors: norms, biases).</summary>
    public float[] ToFloatArray()
    {
        var result = new float[ElementCount];
        ElementConvert.ToSingle(Type, Data, result);
        return result;
    }
}
