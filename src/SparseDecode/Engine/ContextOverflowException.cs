namespace SparseDecode.Engine;

/// <summary>A prompt or generation that would run past the model's context.</summary>
public sealed class ContextOverflowException(string message) : Exception(message);
