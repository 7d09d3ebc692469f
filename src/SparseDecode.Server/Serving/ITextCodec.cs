namespace SparseDecode.Server.Serving;

/// <summary>Text ↔ token ids as the server needs them: the model's tokenizer behind a narrow seam, so that the
/// scheduler and the endpoints do not depend on how the tokenizer is built.</summary>
public interface ITextCodec
{
    /// <summary>addSpecialTokens: add BOS (and whatever the tokenizer's post-processor adds) around the text.</summary>
    int[] Encode(string text, bool addSpecialTokens);

    /// <summary>As Encode, refusing the text (TokenizerTimeoutException) once encoding it takes longer than
    /// `timeLimit`; a codec without such a limit encodes as Encode does.</summary>
    int[] Encode(string text, bool addSpecialTokens, TimeSpan timeLimit) => Encode(text, addSpecialTokens);

    /// <summary>The text of one token as a client sees it in log-probabilities (special tokens included).</summary>
    string TokenText(int id);

    /// <summary>Decodes ids one at a time, holding back incomplete UTF-8 until the bytes that complete it come.</summary>
    ITokenTextStream CreateStream();

    /// <summary>The id of a special token given by its text, or null if the vocabulary has no such single token.</summary>
    int? SpecialTokenId(string token);

    /// <summary>tokenizer_config.json's chat_template (null: none).</summary>
    string? ChatTemplate { get; }
    string? BosToken { get; }
    string? EosToken { get; }
}

public interface ITokenTextStream
{
    string Push(int id);
    string Flush();
}
