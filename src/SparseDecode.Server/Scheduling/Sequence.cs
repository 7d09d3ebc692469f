using System.Diagnostics;
using System.Threading.Channels;
using SparseDecode.Engine;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Serving;
using SparseDecode.Server.Protocol;

namespace SparseDecode.Server.Scheduling;

/// <summary>One request's generation while it is queued or decoding: its engine sequence (KV cache and method
/// state), sampler, and the channel its events go out on. Only the scheduler thread touches the sequence; a
/// handler only reads events and may cancel.</summary>
public sealed class Sequence
{
    // Not marked single-reader: that channel cannot count its unread events, which Emit bounds.
    private readonly Channel<SequenceEvent> _events =
        Channel.CreateUnbounded<SequenceEvent>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly BatchScheduler _owner;
    private int _cancelled;

    internal Sequence(BatchScheduler owner, long id, SequenceRequest request, ITextCodec codec)
    {
        _owner = owner;
        Id = id;
        Request = request;
        Text = codec.CreateStream();
        Stops = new StopMatcher(request.StopStrings);
        MethodLabel = (request.Plan?.Name ?? "dense") + (request.Speculation is null ? "" : "+speculate");
    }

    /// <summary>The request's method as the latency metrics label it: the plan's name or dense, "+speculate" where
    /// the method drafts for dense verification.</summary>
    public string MethodLabel { get; }

    public long Id { get; }
    public SequenceRequest Request { get; }
    public ChannelReader<SequenceEvent> Events => _events.Reader;
    public int PromptTokens => Request.Prompt.Length;
    /// <summary>Tokens generated so far (the scheduler's count; read it after the final event).</summary>
    public int CompletionTokens { get; internal set; }
    public bool IsCancelled => Volatile.Read(ref _cancelled) != 0;
    /// <summary>What speculative decoding did, for a request that speculated (null otherwise); set before the final
    /// event, so a handler reads it after that event.</summary>
    public SpeculationStats? Speculation { get; private set; }
    /// <summary>Prompt tokens not prefilled because a kept prompt's cache began the same way (<see cref="PrefixCache"/>).</summary>
    public int CachedPromptTokens { get; internal set; }

    /// <summary>Stops the sequence (client gone, or the handler is done with it): a queued one leaves the queue at
    /// once; an active one leaves the batch before the next step, and its KV cache is freed then.</summary>
    public void Cancel()
    {
        if (Interlocked.Exchange(ref _cancelled, 1) == 0) _owner.OnCancelled(this);
    }

    // ---- scheduler-side state
    internal IDecodeSequence? Decoder;
    internal Sampler? Sampler;
    /// <summary>The speculative rounds of a request that speculates (null otherwise).</summary>
    internal SpeculativeDecoder? Speculator;
    /// <summary>The token this sequence's row of the current batched step decodes: a draft step's input.</summary>
    internal int DraftInput;
    internal readonly ITokenTextStream Text;
    internal readonly StopMatcher Stops;
    internal float[]? LogprobScratch;
    internal int Prefilled;
    /// <summary>The kept prompt cache and positions of it that admission chose to start from (<see cref="PrefixCache"/>).</summary>
    internal (IDecodeSequence Source, int Reused)? Reuse;
    internal int LastToken;
    /// <summary>When the request was submitted, and when a step last gave it tokens (and how many it had counted
    /// then): the latency metrics' clock (<see cref="Stopwatch"/> ticks).</summary>
    internal readonly long SubmittedAt = Stopwatch.GetTimestamp();
    internal long LastTokenAt;
    internal int TokensTimed;
    /// <summary>The tokens emitted so far (the first CompletionTokens), kept for the prompt cache; null when there is none.</summary>
    internal int[]? Generated;
    internal bool Done;
    /// <summary>The sequence ended with an error: its cache is not kept.</summary>
    internal bool Failed;
    internal LinkedListNode<Sequence>? QueueNode;

    internal void Emit(in SequenceEvent e)
    {
        int limit = _owner.Options.MaxUnreadEvents;
        if (!e.IsFinal && _events.Reader.Count >= limit)
        {
            Emit(new SequenceEvent("", null, null, new ApiException(503,
                $"The client left {limit} events of this stream unread, so its generation was ended to free its batch place.", null, "client_not_reading")));
            return;
        }
        if (e.IsFinal) Speculation = Speculator?.Stats;
        if (e.Error is not null) Failed = true;
        _events.Writer.TryWrite(e);
        if (e.IsFinal)
        {
            Done = true;
            _events.Writer.TryComplete();
        }
    }

    /// <summary>Frees the KV cache and workspace (scheduler thread only).</summary>
    internal void Release()
    {
        Decoder?.Dispose();
        Decoder = null;
        Speculator = null;
        LogprobScratch = null;
        _events.Writer.TryComplete();
    }
}
