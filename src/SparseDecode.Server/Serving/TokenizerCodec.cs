using SparseDecode.Tokenization;

namespace SparseDecode.Server.Serving;

/// <summary>The model's Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) as the server's codec.
/// Streamed text skips special tokens, as transformers' decode(skip_special_tokens=True) does for responses.</summary>
public sealed class TokenizerCodec(Tokenizer tokenizer) : ITextCodec
{
    public static TokenizerCodec FromDirectory(string directory) => new(Tokenizer.FromDirectory(directory));

    public Tokenizer Tokenizer => tokenizer;

    public int[] Encode(string text, bool addSpecialTokens) => tokenizer.Encode(text, addSpecialTokens);

    public int[] Encode(string text, bool addSpecialTokens, TimeSpan timeLimit) => tokenizer.Encode(text, addSpecialTokens, timeLimit);

    public string TokenText(int id) => tokenizer.Decode([id], skipSpecialTokens: false);

    public ITokenTextStream CreateStream() => new Stream(tokenizer.CreateStreamingDecoder(skipSpecialTokens: true));

    public int? SpecialTokenId(string token) => tokenizer.TokenToId(token);

    public string? ChatTemplate => tokenizer.ChatTemplate;
    public string? BosToken => tokenizer.BosToken;
    public string? EosToken => tokenizer.EosToken;

    private sealed class Stream(StreamingDecoder decoder) : ITokenTextStream
    {
        public string Push(int id) => decoder.Push(id);
        public string Flush() => decoder.Flush();
    }
}
