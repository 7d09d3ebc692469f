using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.AI;
using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;
using SparseDecode.Cpu;
using SparseDecode.Server.Serving;
using AiMessage = Microsoft.Extensions.AI.ChatMessage;

namespace SparseDecode.Server.Chat;

/// <summary>The engine as a Microsoft.Extensions.AI <see cref="IChatClient"/>: in-process chat over the Generator,
/// with the chat format the HTTP server uses, stop tokens and stop strings, and the sparse method chosen at
/// construction. A .NET application (or Semantic Kernel) then talks to a local model as to any other chat client.
/// Requests run one at a time: one decode already uses every core.</summary>
public sealed class SparseChatClient : IChatClient
{
    public const int DefaultMaxTokens = 256;

    private readonly ServedModel _model;
    private readonly SelectorSpec _spec;
    private readonly bool _owns;
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <param name="method">--method: dense, oracle, streaming, quest, tidal, lfps, prhs, hshare.</param>
    /// <param name="budget">Keys per head per step: tokens ("256") or a share of the context ("3%").</param>
    public SparseChatClient(ServedModel model, string method = "dense", string budget = "256", IReadOnlyDictionary<string, string>? parameters = null)
        : this(model, SelectorSpec.Parse(method, budget, parameters ?? new Dictionary<string, string>()), owns: false)
    {
    }

    private SparseChatClient(ServedModel model, SelectorSpec spec, bool owns)
    {
        _model = model;
        _spec = spec;
        _owns = owns;
        model.Engine.PlanFor(spec); // a bad method or parameter fails here, not on the first message
        Metadata = new ChatClientMetadata("SparseDecode", null, model.Id);
    }

    /// <summary>Loads a Hugging Face model directory; the client disposes it.</summary>
    public static SparseChatClient Load(string directory, string method = "dense", string budget = "256", IReadOnlyDictionary<string, string>? parameters = null)
    {
        var model = ServedModel.Load(directory);
        try
        {
            return new SparseChatClient(model, SelectorSpec.Parse(method, budget, parameters ?? new Dictionary<string, string>()), owns: true);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public ChatClientMetadata Metadata { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AiMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false)) updates.Add(u);
        return updates.ToChatResponse();
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AiMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var template = _model.Template;
        var turns = messages.Select(m => new Protocol.ChatMessage(m.Role == ChatRole.System ? "system" : m.Role == ChatRole.Assistant ? "assistant" : "user", m.Text)).ToList();
        int[] prompt = _model.Codec.Encode(template.Render(turns), template.EncodeWithSpecialTokens);
        var generation = new GenerationOptions
        {
            MaxTokens = options?.MaxOutputTokens ?? DefaultMaxTokens,
            Sampling = new SamplingOptions(options?.Temperature ?? 0f, options?.TopK ?? 0, options?.TopP ?? 1f, options?.Seed is long s ? (ulong)s : null,
                options?.PresencePenalty ?? 0f, options?.FrequencyPenalty ?? 0f),
            Method = _spec,
            StopTokenIds = _model.StopTokenIds.ToArray(),
        };
        generation.Sampling.Validate();
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var channel = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var matcher = new StopMatcher([.. template.StopStrings, .. options?.StopSequences ?? []]);
            var text = _model.Codec.CreateStream();
            int produced = 0;
            // the generator is synchronous and CPU-bound: it runs on the thread pool and hands text over the channel
            var run = Task.Run(() =>
            {
                try
                {
                    var result = _model.Exclusive(() => new Generator(_model.Engine).Generate(prompt, generation, token =>
                    {
                        produced++;
                        if (_model.StopTokenIds.Contains(token)) return;
                        string piece = matcher.Push(text.Push(token));
                        if (piece.Length > 0) channel.Writer.TryWrite(piece);
                        if (matcher.Stopped) stop.Cancel();
                    }, stop.Token));
                    string rest = matcher.Push(text.Flush()) + matcher.Flush();
                    if (rest.Length > 0) channel.Writer.TryWrite(rest);
                    return (result.FinishReason, result.PromptTokens, Completion: result.Tokens.Length);
                }
                catch (OperationCanceledException) when (matcher.Stopped && !cancellationToken.IsCancellationRequested)
                {
                    return ("stop", prompt.Length, Completion: produced);
                }
                finally
                {
                    channel.Writer.TryComplete();
                }
            }, CancellationToken.None);

            await foreach (string piece in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ResponseId = id, ModelId = _model.Id };
            var (reason, promptTokens, completion) = await run.ConfigureAwait(false);
            yield return new ChatResponseUpdate
            {
                Role = ChatRole.Assistant, ResponseId = id, ModelId = _model.Id,
                FinishReason = reason == "stop" ? ChatFinishReason.Stop : ChatFinishReason.Length,
                Contents = [new UsageContent(new UsageDetails { InputTokenCount = promptTokens, OutputTokenCount = completion, TotalTokenCount = promptTokens + completion })],
            };
        }
        finally
        {
            _gate.Release();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? Metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType == typeof(ServedModel) ? _model
        : null;

    public void Dispose()
    {
        _gate.Dispose();
        if (_owns) _model.Dispose();
    }
}
