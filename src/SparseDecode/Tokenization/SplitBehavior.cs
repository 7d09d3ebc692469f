namespace SparseDecode.Tokenization;

/// <summary>What happens to the delimiters a Split pre-tokenizer finds (Hugging Face's SplitDelimiterBehavior).</summary>
internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

internal static class Splitter
{
    public static SplitBehavior Parse(string name, JsonFields json, string where) => name switch
    {
        "Removed" => SplitBehavior.Removed,
        "Isolated" => SplitBehavior.Isolated,
        "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
        "MergedWithNext" => SplitBehavior.MergedWithNext,
        "Contiguous" => SplitBehavior.Contiguous,
        _ => throw json.Error($"{where}.behavior \"{name}\" is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous"),
    };

    /// <summary>Turns the matches in a text of length <paramref name="length"/> into the covering list of
    /// (start, end, isMatch) spans, as Hugging Face's Pattern::find_matches does.</summary>
    public static void Cover(List<(int Start, int End)> matches, int length, bool invert, List<(int Start, int End, bool IsMatch)> spans)
    {
        if (length == 0)
        {
            spans.Add((0, 0, invert));
            return;
        }
        int prev = 0;
        foreach (var (start, end) in matches)
        {
            if (prev != start) spans.Add((prev, start, invert));
            spans.Add((start, end, !invert));
            prev = end;
        }
        if (prev != length) spans.Add((prev, length, invert));
    }

    /// <summary>Applies the delimiter behavior to the spans; returns the (start, end) of each piece to keep.
    /// A straight port of NormalizedString::split.</summary>
    public static void Apply(List<(int Start, int End, bool IsMatch)> spans, SplitBehavior behavior, List<(int Start, int End)> pieces)
    {
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var s in spans) pieces.Add((s.Start, s.End));
                break;
            case SplitBehavior.Removed:
                foreach (var s in spans)
                    if (!s.IsMatch) pieces.Add((s.Start, s.End));
                break;
            case SplitBehavior.Contiguous:
            {
                bool previousMatch = false;
                foreach (var s in spans)
                {
                    if (s.IsMatch == previousMatch && pieces.Count > 0)
                        pieces[^1] = (pieces[^1].Start, s.End);
                    else
                        pieces.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                break;
            }
            case SplitBehavior.MergedWithPrevious:
            {
                bool previousMatch = false;
                foreach (var s in spans)
                {
                    if (s.IsMatch && !previousMatch && pieces.Count > 0)
                        pieces[^1] = (pieces[^1].Start, s.End);
                    else
                        pieces.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                break;
            }
            case SplitBehavior.MergedWithNext:
            {
                // Walks right to left, so a delimiter joins the piece after it.
                int first = pieces.Count;
                bool previousMatch = false;
                for (int k = spans.Count - 1; k >= 0; k--)
                {
                    var s = spans[k];
                    if (s.IsMatch && !previousMatch && pieces.Count > first)
                        pieces[^1] = (s.Start, pieces[^1].End);
                    else
                        pieces.Add((s.Start, s.End));
                    previousMatch = s.IsMatch;
                }
                pieces.Reverse(first, pieces.Count - first);
                break;
            }
        }
    }
}
