namespace SparseDecode.Evaluation;

/// <summary>The long-code completion task (LongBench's LCC, RepoBench-P): a prompt of held-out code — whole
/// documents of the held-out stream, each followed by the begin-of-text separator, then the start of the target
/// document — that ends at a line boundary, and the answer is the next non-trivial line. Built on the corpus's own
/// token stream (every document tokenized on its own, as training tokenized its rows), so the prompt's tokens are
/// those the model would see for that text; a line boundary is a position right after a token whose text ends
/// with a newline.</summary>
public sealed class CodeCompletion
{
    /// <summary>Fewest characters of an answer line after trimming: shorter lines (`)`, `pass`, `else:`) say
    /// little about the context.</summary>
    public const int MinAnswerChars = 8;

    /// <summary>Most tokens of an answer line, its newline included: generation has <see cref="EvalGrid.Reserve"/>
    /// − 1 steps after the prompt, and a line must fit them with room for the model to run past it.</summary>
    public const int MaxAnswerTokens = 48;

    /// <summary>Most tokens a prompt may fall short of the asked length, where its earliest part is cut forward to
    /// a line start: a draw that would lose more (a line of thousands of tokens, such as a serialized protobuf
    /// descriptor) is drawn again, so that prompts of one context are of one length.</summary>
    public const int MaxShortfall = EvalGrid.Reserve;

    /// <summary>Draws of a sample before the task gives up on prompts that all fall short.</summary>
    private const int Draws = 100;

    private readonly HeldoutCorpus _corpus;
    private readonly ITaskTokenizer _tokenizer;
    private readonly Func<int, bool> _endsLine;
    private readonly Lazy<Index> _index;

    /// <summary>Answer lines of one document: token offsets where each starts and ends (the end is right after the
    /// token that holds its newline), and the tokens of the corpus stream before the document.</summary>
    private sealed record DocumentLines(long StreamStart, int[] Starts, int[] Ends);

    private sealed record Index(DocumentLines[] Documents, long StreamTokens);

    /// <param name="endsLine">Whether a token's text ends with a newline (<see cref="PromptBuilder.EndsLine"/>).</param>
    public CodeCompletion(HeldoutCorpus corpus, ITaskTokenizer tokenizer, Func<int, bool> endsLine)
    {
        _corpus = corpus;
        _tokenizer = tokenizer;
        _endsLine = endsLine;
        // tokenizing the whole corpus is the one way to know which lines have enough code before them; done once
        _index = new Lazy<Index>(BuildIndex);
    }

    /// <summary>Whether a line (without its newline) is worth predicting: at least <see cref="MinAnswerChars"/>
    /// characters after trimming, with a letter or digit (not a bracket or punctuation line), and not a comment
    /// (natural language, not code).</summary>
    public static bool IsNonTrivial(string line)
    {
        string t = line.Trim();
        return t.Length >= MinAnswerChars && !t.StartsWith('#') && t.Any(char.IsLetterOrDigit);
    }

    private Index BuildIndex()
    {
        int n = _corpus.Documents.Count;
        var docs = new DocumentLines[n];
        long stream = 0;
        for (int d = 0; d < n; d++)
        {
            int[] tokens = _corpus.DocumentTokens(d);
            var starts = new List<int>();
            var ends = new List<int>();
            int lineStart = 0;
            for (int i = 0; i < tokens.Length; i++)
            {
                if (!_endsLine(tokens[i])) continue;
                int end = i + 1;
                // the first line of a document follows the previous document, not code of its own file
                if (lineStart > 0 && end - lineStart <= MaxAnswerTokens && IsNonTrivial(LineText(tokens, lineStart, end)))
                {
                    starts.Add(lineStart);
                    ends.Add(end);
                }
                lineStart = end;
            }
            docs[d] = new DocumentLines(stream, starts.ToArray(), ends.ToArray());
            stream += tokens.Length + 1; // the separator after the document
        }
        return new Index(docs, stream);
    }

    /// <summary>The text of tokens [start, end) up to its first newline.</summary>
    private string LineText(int[] tokens, int start, int end) => AnswerScorer.AnswerLine(_tokenizer.Decode(tokens.AsSpan(start, end - start)));

    /// <summary>A sample whose prompt is at most `length` tokens: begin-of-text, then the code before the answer
    /// line — the target document up to it, preceded by as many whole earlier documents (each followed by the
    /// separator) as fit, the earliest cut forward to a line start — never shorter than `length` by more than
    /// <see cref="MaxShortfall"/> tokens. The seed picks a document uniformly among those with an answer line that
    /// has `length` − 1 tokens of the stream before it, then one such line uniformly, and draws again where the cut
    /// would lose more. Throws when no line of the corpus has that much code before it.</summary>
    public TaskSample Build(int length, int seed)
    {
        if (length < 2) throw new ArgumentException($"A code-completion prompt needs at least 2 tokens, got {length}.");
        var index = _index.Value;
        int need = length - 1;
        var candidates = new List<(int Doc, int First)>();
        for (int d = 0; d < index.Documents.Length; d++)
        {
            var doc = index.Documents[d];
            // lines are in order, so those with enough code before them are a suffix of the document's list
            int first = Array.FindIndex(doc.Starts, s => doc.StreamStart + s >= need);
            if (first >= 0) candidates.Add((d, first));
        }
        if (candidates.Count == 0)
            throw new ArgumentException(
                $"The held-out corpus ({index.StreamTokens} tokens) has no code-completion line with the {need} tokens of code before it that a {length}-token prompt needs; use a context of at most {MaxContext(index)} tokens.");
        var rng = new Random(seed);
        for (int draw = 0; draw < Draws; draw++)
            if (TryBuild(length, seed, rng, candidates, index) is { } sample) return sample;
        throw new ArgumentException(
            $"{Draws} code-completion prompts of {length} tokens drawn from the held-out corpus all start more than {MaxShortfall} tokens short (their earliest line is too long); use another context.");
    }

    private TaskSample? TryBuild(int length, int seed, Random rng, List<(int Doc, int First)> candidates, Index index)
    {
        int need = length - 1;
        var (target, firstLine) = rng.Choice(candidates);
        var lines = index.Documents[target];
        int line = firstLine + rng.Next(lines.Starts.Length - firstLine);
        int answerStart = lines.Starts[line], answerEnd = lines.Ends[line];

        // the `need` tokens of the stream before the answer, gathered backwards, and the token before them (the
        // separator stands for "before the corpus"), to find where a line starts
        var before = new List<int[]>();
        int[] own = _corpus.DocumentTokens(target);
        int gathered = answerStart;
        before.Add(own[..answerStart]);
        for (int d = target - 1; d >= 0 && gathered <= need; d--)
        {
            before.Add([.. _corpus.DocumentTokens(d), _tokenizer.BeginOfText]);
            gathered += before[^1].Length;
        }
        before.Reverse();
        int[] stream = [_tokenizer.BeginOfText, .. before.SelectMany(t => t)];
        int cut = stream.Length - need; // stream[cut..] are the last `need` tokens; stream[cut − 1] precedes them
        while (!(stream[cut - 1] == _tokenizer.BeginOfText || _endsLine(stream[cut - 1]))) cut++;
        int[] prompt = [_tokenizer.BeginOfText, .. stream.AsSpan(cut)];
        if (prompt.Length < length - MaxShortfall) return null;
        return TaskSample.WithoutNeedles(RulerTasks.CodeCompletion, length, seed, prompt, own[answerStart..answerEnd],
            LineText(own, answerStart, answerEnd));
    }

    /// <summary>The longest context whose prompt (context − <see cref="EvalGrid.Reserve"/>) some line can fill.</summary>
    private static long MaxContext(Index index)
    {
        long most = 0;
        foreach (var doc in index.Documents)
            if (doc.Starts.Length > 0) most = Math.Max(most, doc.StreamStart + doc.Starts[^1]);
        return most + 1 + EvalGrid.Reserve;
    }
}
