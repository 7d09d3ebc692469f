namespace SparseDecode.Engine;

/// <summary>A step produced logits that are NaN or infinite (NaN/Inf weights, an overflowing activation): the
/// sequence stops here instead of emitting tokens picked from garbage. The message is one sentence.</summary>
public sealed class NonFiniteLogitsException(float worst)
    : Exception($"The model produced non-finite logits ({worst}) at this step, so generation stopped; its weights or config.json are likely corrupt (inspect --check-weights finds NaN/Inf weights).");
