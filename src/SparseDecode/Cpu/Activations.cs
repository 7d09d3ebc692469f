using System.Numerics.Tensors;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The MLP's activation on spans.</summary>
public static class Activations
{
    /// <summary>gate = silu(gate) * up, the SwiGLU of the Llama MLP.</summary>
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        // silu(g) = g * sigmoid(g)
        Span<float> tmp = gate.Length <= 4096 ? stackalloc float[gate.Length] : new float[gate.Length];
        TensorPrimitives.Sigmoid(gate, tmp);
        TensorPrimitives.Multiply(gate, tmp, gate);
        TensorPrimitives.Multiply(gate, up, gate);
    }
}
