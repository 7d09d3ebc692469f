using SparseDecode.Backends;
using SparseDecode.Engine;
using SparseDecode.Server.Chat;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cuda;
using SparseDecode.Tokenization;

namespace SparseDecode.Server.Serving;

/// <summary>The model a server serves: the checkpoint on its engine (CPU or GPU), tokenizer, chat format, and the
/// token ids that end a generation (config.json's eos_token_id, the tokenizer's EOS and the chat format's
/// end-of-turn token).</summary>
public sealed class ServedModel : IDisposable
{
    private readonly object _exclusive = new();

    /// <param name="context">Positions one sequence may hold (prompt + completion), at most the engine's; null: the
    /// engine's. Requests are checked against it and caches sized by it, on every backend.</param>
    public ServedModel(string id, string directory, IInferenceEngine engine, ITextCodec codec, int? context = null)
    {
        if (context is < 1) throw new ArgumentException($"The context must be at least 1 position, got {context}.");
        Context = Math.Min(context ?? engine.MaxContext, engine.MaxContext);
        Id = id;
        Directory = directory;
        Engine = engine;
        Codec = codec;
        Template = ChatTemplate.FromTemplateString(codec.ChatTemplate, codec.BosToken, codec.EosToken);
        var stops = new HashSet<int>(engine.Config.EosTokenIds);
        foreach (string? special in (string?[])[codec.EosToken, Template.EndOfTurn])
            if (!string.IsNullOrEmpty(special) && codec.SpecialTokenId(special) is int id2)
                stops.Add(id2);
        StopTokenIds = stops;
        using (var probe = engine.CreateSequence(1)) SpeculativeSequences = probe is ISpeculativeSequence;
    }

    /// <summary>Loads a Hugging Face model directory on the engine `engine` describes (default: the CPU; "cuda":
    /// the GPU backend, which the server ships); the id defaults to the directory's name.</summary>
    public static ServedModel Load(string directory, string? id = null, EngineOptions? engine = null)
    {
        BackendRegistry.Register(Cuda.CudaBackend.Instance);
        var loaded = BackendRegistry.Load(directory, engine ?? new EngineOptions());
        try
        {
            var codec = new TokenizerCodec(Tokenizer.FromDirectory(directory, loaded.Config));
            return new ServedModel(id ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory))), directory, loaded, codec,
                engine?.Capacity);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    public string Id { get; }
    public string Directory { get; }
    public IInferenceEngine Engine { get; }
    public ITextCodec Codec { get; }
    public ChatTemplate Template { get; }
    public IReadOnlySet<int> StopTokenIds { get; }
    public int Context { get; }

    /// <summary>Whether the engine's sequences are <see cref="ISpeculativeSequence"/> (exact dense passes and
    /// checkpoints of the plan's state), which speculative decoding with a plan that carries state needs
    /// (<see cref="SpeculativeDecoder.CannotDraft"/>). Asked of a sequence made at load rather than assumed per
    /// backend, so a backend that gains the interface is served with it at once.</summary>
    public bool SpeculativeSequences { get; }

    /// <summary>Runs `work` on the engine: at once where sequences may run concurrently (the CPU), else under
    /// one lock that the scheduler's steps also take (the GPU's single stream).</summary>
    public T Exclusive<T>(Func<T> work)
    {
        if (Engine.ConcurrentSequences) return work();
        lock (_exclusive) return work();
    }

    public void Exclusive(Action work) => Exclusive(() => { work(); return 0; });

    public void Dispose() => Engine.Dispose();
}
