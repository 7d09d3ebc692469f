namespace SparseDecode.Tokenization;

/// <summary>A tokenizer that cannot be used: missing file, malformed JSON, an unsupported component or an
/// inconsistent vocabulary. The message is one sentence naming the file and the problem.</summary>
public sealed class TokenizerFormatException : Exception
{
    public TokenizerFormatException(string message) : base(message) { }

    public TokenizerFormatException(string message, Exception inner) : base(message, inner) { }
}
