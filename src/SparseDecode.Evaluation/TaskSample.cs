namespace SparseDecode.Evaluation;

/// <summary>One generated prompt and what a correct continuation is. For needle tasks `Answer` holds the answer's
/// token ids (what exact match compares, as text); for perplexity it holds the held-out tokens that follow the
/// prompt, which every method is teacher-forced through.</summary>
public sealed record TaskSample
{
    public required string Task { get; init; }
    /// <summary>Requested prompt length in tokens; the prompt is at most this long (the haystack is cut at a line end).</summary>
    public required int Length { get; init; }
    /// <summary>Requested needle depth as a fraction of the haystack (null: needles anywhere).</summary>
    public double? Depth { get; init; }
    public required int Seed { get; init; }
    public required int[] Prompt { get; init; }
    public required int[] Answer { get; init; }
    public required string AnswerText { get; init; }
    public required IReadOnlyList<string> Items { get; init; }
    /// <summary>Token offset in the prompt where each needle line starts, in prompt order.</summary>
    public required int[] NeedleStarts { get; init; }
    public required int[] NeedleLengths { get; init; }
    /// <summary>Tokens of code between the begin-of-text token and the question, needles excluded.</summary>
    public required int HaystackLength { get; init; }
    public int QuestionLength { get; init; }

    /// <summary>A sample of code without needles (perplexity, code completion): the prompt (begin-of-text, then
    /// held-out code, all of it haystack) and the tokens that follow it with their text.</summary>
    public static TaskSample WithoutNeedles(string task, int length, int seed, int[] prompt, int[] answer, string answerText) => new()
    {
        Task = task,
        Length = length,
        Depth = null,
        Seed = seed,
        Prompt = prompt,
        Answer = answer,
        AnswerText = answerText,
        Items = [],
        NeedleStarts = [],
        NeedleLengths = [],
        HaystackLength = prompt.Length - 1,
    };

    /// <summary>The prompt's tokens hashed (64-bit FNV-1a over the token ids, 16 hex digits): equal for equal
    /// prompts on every run and platform.</summary>
    public string Fingerprint
    {
        get
        {
            ulong h = 14695981039346656037UL;
            foreach (int t in Prompt)
                for (int shift = 0; shift < 32; shift += 8)
                {
                    h ^= (byte)(t >> shift);
                    h *= 1099511628211UL;
                }
            return h.ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    /// <summary>Where the first needle sits, as a fraction of the haystack (needles not counted).</summary>
    public double ActualDepth
    {
        get
        {
            if (NeedleStarts.Length == 0 || HaystackLength == 0) return double.NaN;
            return (NeedleStarts[0] - 1) / (double)HaystackLength;
        }
    }
}
