namespace SparseDecode.Evaluation;

/// <summary>How one generated answer scored: exact match of the stripped answer, the partial score (the fraction of
/// expected items present, RULER's string_match_all; for code completion the edit similarity as a fraction), and
/// the score the task counts (partial credit for the multi-item families and code completion, exact match
/// otherwise).</summary>
public readonly record struct AnswerScore(bool Exact, double Partial, double Score);

/// <summary>Scores generated answers the way RULER does, on the text up to the first newline; code completion the
/// way LongBench's code_sim_score and RepoBench's edit similarity do.</summary>
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
        string expected = expectedAnswer.Trim();
        bool exact = string.Equals(line, expected, StringComparison.Ordinal);
        if (RulerTasks.ScoresEditSimilarity(task))
        {
            double similarity = EditSimilarity(line, expected) / 100;
            return new AnswerScore(exact, similarity, similarity);
        }
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

    /// <summary>Edit similarity of two strings, 0–100: 100 · (1 − d ÷ (|a| + |b|)), where d is the Levenshtein
    /// distance with insertions and deletions costing 1 and a substitution 2 (the insert/delete distance,
    /// |a| + |b| − 2 · LCS). It is fuzz.ratio of python-Levenshtein and rapidfuzz, which LongBench's code_sim_score
    /// and RepoBench's edit similarity compute. Two empty strings are identical (100). Compared by UTF-16 code
    /// units.</summary>
    public static double EditSimilarity(string a, string b)
    {
        int total = a.Length + b.Length;
        if (total == 0) return 100;
        return 100.0 * (1 - InsertDeleteDistance(a, b) / (double)total);
    }

    /// <summary>The Levenshtein distance with substitutions costing 2 (an insertion and a deletion): |a| + |b| −
    /// 2 · (length of the longest common subsequence).</summary>
    public static int InsertDeleteDistance(string a, string b)
    {
        // the longest common subsequence by the classic dynamic programme, two rows
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
                cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : Math.Max(prev[j], cur[j - 1]);
            (prev, cur) = (cur, prev);
        }
        return a.Length + b.Length - 2 * prev[b.Length];
    }
}
