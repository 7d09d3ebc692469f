namespace SparseDecode.Evaluation;

/// <summary>One synthetic task before it is placed in a haystack: the needle lines in the order they must appear,
/// the question (the answer continues it), the answer text, and the items partial credit counts.</summary>
public sealed record TaskInstance(IReadOnlyList<string> Needles, string Question, string Answer, IReadOnlyList<string> Items);

/// <summary>The RULER-style task families the bundled model was trained on, ported from
/// tools/reference-model/tasks.py with the same line formats, syllables and value ranges. Keep the two in step:
/// the model answers only the formats it was taught.</summary>
public static class RulerTasks
{
    public const string Passkey = "passkey";
    public const string MultiKey = "multikey";
    public const string MultiValue = "multivalue";
    public const string MultiQuery = "multiquery";
    public const string VarTrack = "vartrack";
    public const string CommonWords = "cwe";
    /// <summary>Not a needle task: the next line of held-out code after a long prefix of it, scored by edit
    /// similarity (<see cref="CodeCompletion"/>).</summary>
    public const string CodeCompletion = "lcc";
    /// <summary>Not a needle task: perplexity of held-out code continued under each method.</summary>
    public const string Perplexity = "ppl";

    /// <summary>Needle tasks, in report order.</summary>
    public static IReadOnlyList<string> NeedleTasks { get; } = [Passkey, MultiKey, MultiValue, MultiQuery, VarTrack, CommonWords];

    /// <summary>Every task the evaluation knows, perplexity last.</summary>
    public static IReadOnlyList<string> All { get; } = [.. NeedleTasks, CodeCompletion, Perplexity];

    /// <summary>The tasks `eval` runs when none are named: the needle tasks and perplexity, the grid the committed
    /// results were made with (code completion is asked for by name).</summary>
    public static IReadOnlyList<string> Default { get; } = [.. NeedleTasks, Perplexity];

    /// <summary>Tasks whose samples place needles at a depth of the haystack (sample i of n at (i + 0.5)/n).</summary>
    public static bool PlacesNeedles(string task) => NeedleTasks.Contains(task);

    /// <summary>Tasks scored by the edit similarity of the answer line (continuous in [0, 1]); exact match is kept
    /// beside it.</summary>
    public static bool ScoresEditSimilarity(string task) => task == CodeCompletion;

    /// <summary>Tasks scored by the fraction of expected items present (RULER's string_match_all); the others by
    /// exact match of the whole answer.</summary>
    public static bool GivesPartialCredit(string task) => task is MultiValue or MultiQuery or VarTrack or CommonWords;

    public static IReadOnlyList<string> Syllables { get; } =
    [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "da", "fe", "gu", "ha", "jo", "ki", "le", "mo",
        "nu", "pa", "re", "si", "tu", "wa", "ze", "bo", "ce", "di", "fo", "ga", "hi", "ju", "ku", "la",
    ];

    private const string Upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    public static TaskInstance Generate(string task, Random rng) => task switch
    {
        Passkey => MakePasskey(rng),
        MultiKey => MakeMultiKey(rng),
        MultiValue => MakeMultiValue(rng),
        MultiQuery => MakeMultiQuery(rng),
        VarTrack => MakeVarTrack(rng),
        CommonWords => MakeCommonWords(rng),
        _ => throw new ArgumentException($"'{task}' is not a needle task; choose from {string.Join(", ", NeedleTasks)}."),
    };

    public static string PseudoWord(Random rng, int syllables = 3)
    {
        var parts = new string[syllables];
        for (int i = 0; i < syllables; i++) parts[i] = rng.Choice(Syllables);
        return string.Concat(parts);
    }

    public static string MagicNumber(Random rng) => rng.RandInt(1_000_000, 9_999_999).ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static string VarName(Random rng)
    {
        Span<char> s = stackalloc char[5];
        for (int i = 0; i < 5; i++) s[i] = rng.Choice(Upper);
        return new string(s);
    }

    private static List<string> Distinct(Random rng, Func<Random, string> make, int n)
    {
        var output = new List<string>(n);
        while (output.Count < n)
        {
            string x = make(rng);
            if (!output.Contains(x)) output.Add(x);
        }
        return output;
    }

    private static string Num(int v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static TaskInstance MakePasskey(Random rng)
    {
        string v = Num(rng.RandInt(10_000, 99_999));
        return new([$"# The pass key is {v}. Remember it. {v} is the pass key.\n"], "# What is the pass key? The pass key is", $" {v}", [v]);
    }

    public static TaskInstance MakeMultiKey(Random rng, int keys = 5)
    {
        var ks = Distinct(rng, r => PseudoWord(r), keys);
        var vs = Distinct(rng, MagicNumber, keys);
        var needles = new List<string>(keys);
        for (int i = 0; i < keys; i++) needles.Add($"# One of the special magic numbers for {ks[i]} is: {vs[i]}.\n");
        rng.Shuffle(needles);
        int q = rng.RandRange(keys);
        return new(needles, $"# What is the special magic number for {ks[q]}? The special magic number for {ks[q]} is:", $" {vs[q]}", [vs[q]]);
    }

    public static TaskInstance MakeMultiValue(Random rng, int values = 4)
    {
        string k = PseudoWord(rng);
        var vs = Distinct(rng, MagicNumber, values);
        var needles = vs.Select(v => $"# One of the special magic numbers for {k} is: {v}.\n").ToList();
        return new(needles, $"# What are all the special magic numbers for {k}? The special magic numbers for {k} are:",
            " " + string.Join(", ", vs), vs);
    }

    public static TaskInstance MakeMultiQuery(Random rng, int keys = 4)
    {
        var ks = Distinct(rng, r => PseudoWord(r), keys);
        var vs = Distinct(rng, MagicNumber, keys);
        var needles = new List<string>(keys);
        for (int i = 0; i < keys; i++) needles.Add($"# One of the special magic numbers for {ks[i]} is: {vs[i]}.\n");
        var order = Enumerable.Range(0, keys).ToList();
        rng.Shuffle(order);
        needles = order.Select(j => needles[j]).ToList(); // appearance order differs from the asked order
        string q = $"# What are the special magic numbers for {string.Join(", ", ks.Take(keys - 1))} and {ks[^1]}? They are:";
        return new(needles, q, " " + string.Join(", ", vs), vs);
    }

    public static TaskInstance MakeVarTrack(Random rng, int hops = 4)
    {
        var names = Distinct(rng, VarName, hops + 2);
        string v = Num(rng.RandInt(10_000, 99_999));
        string other = Num(rng.RandInt(10_000, 99_999));
        var chain = names.Take(hops).ToList();
        var needles = new List<string> { $"# VAR {chain[0]} = {v}\n" };
        for (int j = 1; j < hops; j++) needles.Add($"# VAR {chain[j]} = VAR {chain[j - 1]}\n");
        needles.Insert(rng.RandRange(needles.Count + 1), $"# VAR {names[hops]} = {other}\n"); // a distractor chain
        needles.Insert(rng.RandRange(needles.Count + 1), $"# VAR {names[hops + 1]} = VAR {names[hops]}\n");
        // the distractor's second link must come after its first
        int a = needles.FindIndex(s => s.StartsWith($"# VAR {names[hops]} =", StringComparison.Ordinal));
        int b = needles.FindIndex(s => s.StartsWith($"# VAR {names[hops + 1]} =", StringComparison.Ordinal));
        if (b < a) (needles[a], needles[b]) = (needles[b], needles[a]);
        return new(needles, $"# Which variables are assigned the value {v}? They are:", " " + string.Join(", ", chain), chain);
    }

    public static TaskInstance MakeCommonWords(Random rng, int top = 3, int vocab = 12)
    {
        var words = Distinct(rng, r => PseudoWord(r, 2), vocab);
        var counts = new int[vocab];
        for (int i = 0; i < vocab; i++) counts[i] = rng.RandInt(1, 3);
        for (int j = 0; j < top; j++) counts[j] = 12 - 3 * j; // the common words, strictly ordered by frequency
        var bag = new List<string>();
        for (int i = 0; i < vocab; i++)
            for (int c = 0; c < counts[i]; c++) bag.Add(words[i]);
        rng.Shuffle(bag);
        var lines = new List<string>();
        for (int i = 0; i < bag.Count; i += 8) lines.Add($"# Words: {string.Join(' ', bag.Skip(i).Take(8))}\n");
        var common = words.Take(top).ToList();
        return new(lines, $"# What are the {top} most common words in the word lists above? They are:", " " + string.Join(", ", common), common);
    }
}
