namespace SparseDecode.Tokenization;

/// <summary>A text on which a tokenizer file's regex ran past its match timeout. The text is refused (the server
/// answers 400) rather than letting one input hold a thread for minutes. The message is one sentence.</summary>
public sealed class TokenizerTimeoutException(string message) : Exception(message);
