using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;

namespace SparseDecode.Tests.Server;

/// <summary>An engine that passes every call on to another (the fixture's), for tests that watch, bound or strip what
/// the scheduler gets from an engine. Its sequences may be <see cref="WrappedSequence"/>s; batched calls unwrap them.</summary>
internal abstract class WrappedEngine(IInferenceEngine inner) : IInferenceEngine
{
    protected IInferenceEngine Inner => inner;
    public ModelConfig Config => inner.Config;
    public string DeviceName => inner.DeviceName;
    public int MaxContext => inner.MaxContext;
    public virtual bool SupportsObserver => inner.SupportsObserver;
    public bool ConcurrentSequences => inner.ConcurrentSequences;
    public virtual IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null) => inner.CreateSequence(capacity, plan);
    public virtual bool HasRoomFor(int capacity, SelectionPlan? plan = null) => inner.HasRoomFor(capacity, plan);
    public void DecodeBatch(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens) => inner.DecodeBatch(Unwrap(sequences), tokens);

    public virtual void PrefillBatch(IReadOnlyList<IDecodeSequence> sequences, IReadOnlyList<ReadOnlyMemory<int>> tokens) =>
        inner.PrefillBatch(Unwrap(sequences), tokens);

    private static IReadOnlyList<IDecodeSequence> Unwrap(IReadOnlyList<IDecodeSequence> sequences) =>
        sequences.Select(s => s is WrappedSequence w ? w.Inner : s).ToList();

    // the wrapped engine belongs to the fixture
    public void Dispose() { }
}

/// <summary>A sequence that passes every call on to another: a plain <see cref="IDecodeSequence"/> whatever else the
/// wrapped one is.</summary>
internal class WrappedSequence(IDecodeSequence inner) : IDecodeSequence
{
    public IDecodeSequence Inner => inner;
    public int Length => inner.Length;
    public int Capacity => inner.Capacity;
    public long CacheBytes => inner.CacheBytes;
    public ReadOnlySpan<float> Logits => inner.Logits;
    public virtual void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null) =>
        inner.Prefill(tokens, everyLogits, progress);
    public void Decode(int token, IAttentionObserver? observer = null) => inner.Decode(token, observer);
    public virtual IDecodeSequence Fork(int capacity, SelectionPlan? plan = null) => new WrappedSequence(inner.Fork(capacity, plan));
    public void Truncate(int length) => inner.Truncate(length);
    public virtual void Dispose() => inner.Dispose();
}
