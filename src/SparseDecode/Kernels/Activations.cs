using System.Numerics.Tensors;

namespace SparseDecode.Kernels;

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

    /// <summary>In-place softmax with max subtraction; returns log of the partition function (max + log Σ).</summary>
    public static float Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
        return max + MathF.Log(sum);
    }

    /// <summary>log-softmax value of one entry, computed in f64 for stable scoring.</summary>
    public static double LogSoftmaxAt(ReadOnlySpan<float> logits, int index)
    {
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return logits[index] - max - Math.Log(sum);
    }
}
