using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>A character-level tokenizer over ASCII (id = code point, begin-of-text = 128): prompt building can be
/// checked position by position without a model.</summary>
internal sealed class ToyTokenizer : ITaskTokenizer
{
    public int VocabSize => 129;
    public int BeginOfText => 128;

    public int[] Encode(string text) => text.Select(c => c < 128 ? (int)c : '?').ToArray();

    public string Decode(ReadOnlySpan<int> ids)
    {
        var chars = new char[ids.Length];
        int n = 0;
        foreach (int id in ids)
            if (id != BeginOfText) chars[n++] = (char)id;
        return new string(chars, 0, n);
    }

    /// <summary>Documents of code-like lines of varying length.</summary>
    public static List<string> Documents(int count, int linesPerDoc, int seed = 7)
    {
        var rng = new Random(seed);
        var docs = new List<string>();
        for (int d = 0; d < count; d++)
        {
            var sb = new System.Text.StringBuilder();
            for (int l = 0; l < linesPerDoc; l++)
                sb.Append(new string(' ', 4 * rng.Next(3))).Append("x_").Append(rng.Next(1000)).Append(" = compute(").Append(rng.Next(100)).Append(")\n");
            docs.Add(sb.ToString());
        }
        return docs;
    }
}
