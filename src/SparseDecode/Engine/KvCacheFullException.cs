namespace SparseDecode.Engine;

/// <summary>The engine has no room for another sequence of the capacity asked for now (every slot taken, or too few
/// free pages of its KV cache); room comes back as sequences end (<see cref="IInferenceEngine.HasRoomFor"/>).</summary>
public sealed class KvCacheFullException(string message) : InvalidOperationException(message);
