namespace SparseDecode.Evaluation;

/// <summary>How one generated answer scored: exact match of the stripped answer, the fraction of expected items
/// present (RULER's string_match_all), and the score the task counts (partial credit for the multi-item families,
/// exact match otherwise).</summary>
public readonly record struct AnswerScore(bool Exact, double Partial, double Score);

/// <summary>Scores generated answers the way RULER does, on the text up to the first newline.</summary>
public static class AnswerScorer
{
    /// <summary>The answer as generated: everything before the first newline.</summary>
    public static string AnswerLine(string generated)
    {
        int nl = generated.IndexOf('\n');
        return nl < 0 ? generated : generated[..nl];
    }

    public static AnswerScore Score(string task, string expectedAnswer, IReadOnlyList<string> items, string generated)
    {
        string line = AnswerLine(generated).Trim();
        bool exact = string.Equals(line, expectedAnswer.Trim(), StringComparison.Ordinal);
        double partial;
        if (items.Count == 0) partial = exact ? 1 : 0;
        else
        {
            int present = 0;
            foreach (string item in items)
                if (line.Contains(item, StringComparison.OrdinalIgnoreCase)) present++;
            partial = present / (double)items.Count;
        }
        double score = RulerTasks.GivesPartialCredit(task) ? partial : (exact ? 1 : 0);
        return new AnswerScore(exact, partial, score);
    }
}
