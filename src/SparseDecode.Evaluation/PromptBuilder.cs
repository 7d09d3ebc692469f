namespace SparseDecode.Evaluation;

/// <summary>Builds task prompts at token level exactly as training did (tools/reference-model/train.py,
/// Data.task_sequence): begin-of-text, a window of held-out code cut at tokens that end a line, each needle line
/// tokenized on its own and inserted at a line boundary, then the separately tokenized question.</summary>
public sealed class PromptBuilder
{
    private readonly HeldoutCorpus _corpus;
    private readonly ITaskTokenizer _tokenizer;
    private readonly bool[] _lineEnd;
    private readonly bool[] _newline;
    private readonly CodeCompletion _completion;

    public PromptBuilder(HeldoutCorpus corpus, ITaskTokenizer tokenizer)
    {
        _corpus = corpus;
        _tokenizer = tokenizer;
        _lineEnd = new bool[tokenizer.VocabSize];
        _newline = new bool[tokenizer.VocabSize];
        for (int i = 0; i < _lineEnd.Length; i++)
        {
            if (i == tokenizer.BeginOfText) continue;
            string text = tokenizer.Decode([i]);
            _lineEnd[i] = text.EndsWith('\n');
            _newline[i] = text.Contains('\n');
        }
        _completion = new CodeCompletion(corpus, tokenizer, EndsLine);
    }

    /// <summary>Whether the token's text ends with a newline: needles are inserted only after such tokens.</summary>
    public bool EndsLine(int token) => (uint)token < (uint)_lineEnd.Length && _lineEnd[token];

    /// <summary>Whether the token's text holds a newline anywhere: a generated line is complete once one such
    /// token has been decoded.</summary>
    public bool HasNewline(int token) => (uint)token < (uint)_newline.Length && _newline[token];

    public ITaskTokenizer Tokenizer => _tokenizer;

    /// <summary>A sample of `task` whose prompt is about `length` tokens (never more). `depth` in [0, 1] places the
    /// needles from that fraction of the haystack on, within 10% of it (train.py's evaluation rule); null scatters
    /// them anywhere (train.py's training rule). For perplexity, `continuation` tokens follow the prompt, and
    /// `perplexityWindow` (≥ length) is the prompt length the text is drawn for: shorter prompts are its suffix, so
    /// that samples of one seed score the same continuation at every context and only the history differs. Code
    /// completion ignores `depth` (<see cref="CodeCompletion.Build"/>).</summary>
    public TaskSample Build(string task, int length, double? depth, int seed, int continuation = 32, int perplexityWindow = 0)
    {
        if (task == RulerTasks.Perplexity) return BuildPerplexity(length, seed, continuation, Math.Max(length, perplexityWindow));
        if (task == RulerTasks.CodeCompletion) return _completion.Build(length, seed);
        if (depth is double d && (d < 0 || d > 1)) throw new ArgumentOutOfRangeException(nameof(depth), "Depth must be in [0, 1].");
        var rng = new Random(seed);
        for (int attempt = 0; attempt < 1000; attempt++)
        {
            var s = TryBuild(task, length, depth, seed, rng);
            if (s is not null) return s;
        }
        throw new ArgumentException($"A {task} prompt of {length} tokens cannot hold its needles; use a longer context.");
    }

    private TaskSample? TryBuild(string task, int length, double? depth, int seed, Random rng)
    {
        var inst = RulerTasks.Generate(task, rng);
        var nids = inst.Needles.Select(_tokenizer.Encode).ToArray();
        int[] qids = _tokenizer.Encode(inst.Question), aids = _tokenizer.Encode(inst.Answer);
        int hayLen = length - 1 - nids.Sum(n => n.Length) - qids.Length;
        if (hayLen <= 0) throw new ArgumentException($"A {task} prompt needs more than {length} tokens; use a longer context.");
        var hay = _corpus.Window(rng, hayLen);
        var ends = new List<int>();
        for (int i = 0; i < hay.Length; i++)
            if (EndsLine(hay[i])) ends.Add(i + 1); // cut positions right after a line end
        if (ends.Count < nids.Length + 1) return null;
        int hayEnd = ends[^1];
        ends.RemoveAt(ends.Count - 1);
        List<int> cand;
        if (depth is not double d) cand = ends;
        else
        {
            int lo = (int)(d * hayEnd), hi = lo + Math.Max(64, hayEnd / 10);
            cand = ends.Where(e => e >= lo && e <= hi).ToList();
            if (cand.Count == 0) cand = [ends.MinBy(e => Math.Abs(e - lo))];
        }
        var cuts = new int[nids.Length];
        for (int i = 0; i < cuts.Length; i++) cuts[i] = rng.Choice(cand);
        Array.Sort(cuts);

        var prompt = new List<int>(length) { _tokenizer.BeginOfText };
        var starts = new int[nids.Length];
        int prev = 0;
        for (int i = 0; i < nids.Length; i++)
        {
            prompt.AddRange(hay.AsSpan(prev, cuts[i] - prev));
            starts[i] = prompt.Count;
            prompt.AddRange(nids[i]);
            prev = cuts[i];
        }
        prompt.AddRange(hay.AsSpan(prev, hayEnd - prev));
        prompt.AddRange(qids);
        return new TaskSample
        {
            Task = task,
            Length = length,
            Depth = depth,
            Seed = seed,
            Prompt = prompt.ToArray(),
            Answer = aids,
            AnswerText = inst.Answer,
            Items = inst.Items,
            NeedleStarts = starts,
            NeedleLengths = nids.Select(n => n.Length).ToArray(),
            HaystackLength = hayEnd,
            QuestionLength = qids.Length,
        };
    }

    /// <summary>Begin-of-text and `length` − 1 tokens of held-out code; the next `continuation` tokens are the target.
    /// The text is drawn for a prompt of `window` tokens and the prompt is the end of it.</summary>
    private TaskSample BuildPerplexity(int length, int seed, int continuation, int window)
    {
        if (length < 2 || continuation < 1) throw new ArgumentException("Perplexity needs a prompt of at least 2 tokens and a continuation of at least 1.");
        var rng = new Random(seed);
        var text = _corpus.Window(rng, window - 1 + continuation);
        int skip = window - length;
        var prompt = new int[length];
        prompt[0] = _tokenizer.BeginOfText;
        text.AsSpan(skip, length - 1).CopyTo(prompt.AsSpan(1));
        var target = text[(skip + length - 1)..];
        return TaskSample.WithoutNeedles(RulerTasks.Perplexity, length, seed, prompt, target, _tokenizer.Decode(target));
    }
}
