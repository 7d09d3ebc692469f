using System.Numerics.Tensors;

namespace SparseDecode.Engine;

/// <summary>Softmax over next-token logits: what sampling and scoring read, whichever backend made the logits.</summary>
public static class Logits
{
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
