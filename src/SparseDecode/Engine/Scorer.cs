namespace SparseDecode.Engine;

/// <summary>Per-token log-probabilities of a token sequence under dense attention: entry i is
/// log p(token i+1 | tokens 0..i), the form transformers' logits give. Runs on any engine.</summary>
public static class Scorer
{
    public static double[] TokenLogprobs(IInferenceEngine engine, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length < 2) throw new ArgumentException("Scoring needs at least two tokens.");
        using var sequence = engine.CreateSequence(tokens.Length);
        var result = new double[tokens.Length - 1];
        var ids = tokens.ToArray();
        sequence.Prefill(tokens, (i, logits) =>
        {
            if (i + 1 >= ids.Length) return;
            double lp = Logits.LogSoftmaxAt(logits, ids[i + 1]);
            // A NaN here would reach the JSON writer, which refuses it with an exception far from the cause.
            if (!double.IsFinite(lp)) throw new NonFiniteLogitsException((float)lp);
            result[i] = lp;
        });
        return result;
    }
}
