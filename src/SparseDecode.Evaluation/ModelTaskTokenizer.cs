using SparseDecode.Model;
using SparseDecode.Tokenization;

namespace SparseDecode.Evaluation;

/// <summary>A model's own tokenizer in the form the task builder uses: plain text without special tokens, and the
/// begin-of-text token from config.json (bos_token_id), else the tokenizer's &lt;|endoftext|&gt;.</summary>
public sealed class ModelTaskTokenizer : ITaskTokenizer
{
    private readonly Tokenizer _tokenizer;

    public ModelTaskTokenizer(Tokenizer tokenizer, ModelConfig config)
    {
        _tokenizer = tokenizer;
        VocabSize = Math.Min(tokenizer.VocabSize, config.VocabSize);
        BeginOfText = config.BosTokenId ?? tokenizer.TokenToId(HeldoutCorpus.Separator)
            ?? (tokenizer.BosToken is string b ? tokenizer.TokenToId(b) : null)
            ?? throw new ArgumentException("The model defines no begin-of-text token (bos_token_id) and its tokenizer has no <|endoftext|>.");
    }

    public int VocabSize { get; }
    public int BeginOfText { get; }

    public int[] Encode(string text) => _tokenizer.Encode(text, addSpecialTokens: false);

    public string Decode(ReadOnlySpan<int> ids) => _tokenizer.Decode(ids);
}
