namespace SparseDecode.Evaluation;

/// <summary>What the task builder needs from a tokenizer: ids of plain text (no special tokens added), text of
/// ids, and the begin-of-text token the model was trained to see first. The model's own tokenizer serves through
/// <see cref="ModelTaskTokenizer"/>; tests may use a toy one.</summary>
public interface ITaskTokenizer
{
    int VocabSize { get; }

    /// <summary>The token every training sequence began with (&lt;|endoftext|&gt; for the bundled model), which
    /// also separates the held-out documents.</summary>
    int BeginOfText { get; }

    int[] Encode(string text);

    string Decode(ReadOnlySpan<int> ids);
}
