using SparseDecode.Engine;
using SparseDecode.Server.Chat;

namespace SparseDecode.Server.Hosting;

/// <summary>The model a server serves: weights, tokenizer, chat format, and the token ids that end a generation
/// (config.json's eos_token_id, the tokenizer's EOS and the chat format's end-of-turn token).</summary>
public sealed class ServedModel : IDisposable
{
    public ServedModel(string id, Transformer transformer, ITextCodec codec)
    {
        Id = id;
        Transformer = transformer;
        Codec = codec;
        Template = ChatTemplate.FromTemplateString(codec.ChatTemplate, codec.BosToken, codec.EosToken);
        var stops = new HashSet<int>(transformer.Config.EosTokenIds);
        foreach (string? special in (string?[])[codec.EosToken, Template.EndOfTurn])
            if (!string.IsNullOrEmpty(special) && codec.SpecialTokenId(special) is int id2)
                stops.Add(id2);
        StopTokenIds = stops;
    }

    /// <summary>Loads weights and tokenizer from a Hugging Face model directory; the id defaults to its name.</summary>
    public static ServedModel Load(string directory, string? id = null)
    {
        var transformer = Transformer.Load(directory);
        try
        {
            var codec = TokenizerCodec.FromDirectory(directory);
            return new ServedModel(id ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory))), transformer, codec);
        }
        catch
        {
            transformer.Dispose();
            throw;
        }
    }

    public string Id { get; }
    public Transformer Transformer { get; }
    public ITextCodec Codec { get; }
    public ChatTemplate Template { get; }
    public IReadOnlySet<int> StopTokenIds { get; }
    public int Context => Transformer.Config.MaxPositions;

    public void Dispose() => Transformer.Dispose();
}
