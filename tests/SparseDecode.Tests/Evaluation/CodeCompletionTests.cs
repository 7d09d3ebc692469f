using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>The long-code completion task: samples built from the corpus stream end at a line boundary, their
/// answer is the true next non-trivial line and never part of the prompt, the same seed gives the same sample, and a
/// corpus too short for the prompt is refused; the scorer's edit similarity against hand-computed cases.</summary>
public class CodeCompletionTests
{
    private static readonly ToyTokenizer Tok = new();

    /// <summary>Documents with trivial lines (blank, brackets, short, comments) between the code lines.</summary>
    private static List<string> Documents(int count, int lines)
    {
        var rng = new Random(11);
        var docs = new List<string>();
        for (int d = 0; d < count; d++)
        {
            var sb = new System.Text.StringBuilder();
            for (int l = 0; l < lines; l++)
                sb.Append((l % 5) switch
                {
                    0 => $"def f_{d}_{l}(x):\n",
                    1 => $"    return x * {rng.Next(1000)} + y_{rng.Next(100)}\n",
                    2 => "\n",
                    3 => rng.Next(2) == 0 ? ")\n" : "# a comment line that is long enough\n",
                    _ => "    pass\n",
                });
            docs.Add(sb.ToString());
        }
        return docs;
    }

    private static readonly List<string> Docs = Documents(30, 40);
    private static readonly PromptBuilder Builder = new(new HeldoutCorpus(Docs, Tok), Tok);

    /// <summary>The corpus stream as the builder sees it: every document's tokens followed by the separator.</summary>
    private static int[] Stream() => Docs.SelectMany(d => Tok.Encode(d).Append(Tok.BeginOfText)).ToArray();

    [Theory]
    [InlineData(300)]
    [InlineData(1000)]
    [InlineData(4000)]
    public void PromptIsTheCodeRightBeforeTheTrueNextLine(int length)
    {
        int[] stream = Stream();
        for (int seed = 0; seed < 40; seed++)
        {
            var s = Builder.Build(RulerTasks.CodeCompletion, length, null, seed);
            Assert.Equal(RulerTasks.CodeCompletion, s.Task);
            Assert.Null(s.Depth);
            Assert.Equal(Tok.BeginOfText, s.Prompt[0]);
            Assert.InRange(s.Prompt.Length, length - 40, length); // at most one line (under 40 characters) short
            Assert.Equal('\n', (char)s.Prompt[^1]);
            // the prompt's body is a stretch of the stream that starts a line, and the answer line follows it
            int[] body = s.Prompt[1..];
            var at = Enumerable.Range(0, stream.Length - body.Length + 1)
                .Where(i => stream.AsSpan(i, body.Length).SequenceEqual(body)).ToList();
            Assert.NotEmpty(at);
            Assert.Contains(at, i => (i == 0 || stream[i - 1] == '\n' || stream[i - 1] == Tok.BeginOfText)
                && Tok.Decode(stream.AsSpan(i + body.Length, s.Answer.Length)) == s.AnswerText + "\n");
            Assert.Equal(s.AnswerText + "\n", Tok.Decode(s.Answer));
            Assert.True(CodeCompletion.IsNonTrivial(s.AnswerText), s.AnswerText);
            // blank, bracket, comment and short lines are never the answer
            Assert.True(s.AnswerText.StartsWith("    return x * ", StringComparison.Ordinal) || s.AnswerText.StartsWith("def f_", StringComparison.Ordinal), s.AnswerText);
        }
    }

    [Fact]
    public void SameSeedSameSampleAndSeedsSpreadOverTheCorpus()
    {
        var a = Builder.Build(RulerTasks.CodeCompletion, 1000, null, 5);
        var b = new PromptBuilder(new HeldoutCorpus(Docs, Tok), Tok).Build(RulerTasks.CodeCompletion, 1000, null, 5);
        Assert.Equal(a.Prompt, b.Prompt);
        Assert.Equal(a.AnswerText, b.AnswerText);
        Assert.Equal(a.Fingerprint, b.Fingerprint);
        var answers = Enumerable.Range(0, 30).Select(seed => Builder.Build(RulerTasks.CodeCompletion, 1000, null, seed).AnswerText).Distinct().Count();
        Assert.True(answers >= 25, $"{answers} distinct answers of 30");
    }

    [Fact]
    public void CorpusTooShortForThePromptIsOneSentence()
    {
        var small = new PromptBuilder(new HeldoutCorpus(Documents(2, 20), Tok), Tok);
        var e = Assert.Throws<ArgumentException>(() => small.Build(RulerTasks.CodeCompletion, 100_000, null, 1));
        Assert.StartsWith("The held-out corpus (", e.Message);
        Assert.Contains("use a context of at most", e.Message);
        Assert.Single(e.Message.Split(". ", StringSplitOptions.RemoveEmptyEntries));
        // a prompt the same corpus can fill builds
        Assert.InRange(small.Build(RulerTasks.CodeCompletion, 300, null, 1).Prompt.Length, 260, 300);
    }

    /// <summary>A line of thousands of tokens (a serialized descriptor) at a prompt's start would cut it far short:
    /// such draws are drawn again, and a corpus of nothing else is refused.</summary>
    [Fact]
    public void PromptsThatStartInsideAHugeLineAreDrawnAgain()
    {
        string huge = "DESCRIPTOR = b'" + new string('z', 3000) + "'\n";
        var docs = Documents(30, 40).Select((d, i) => i % 2 == 0 ? d.Insert(d.Length / 2, huge) : d).ToList();
        var builder = new PromptBuilder(new HeldoutCorpus(docs, Tok), Tok);
        for (int seed = 0; seed < 60; seed++)
            Assert.InRange(builder.Build(RulerTasks.CodeCompletion, 1000, null, seed).Prompt.Length, 1000 - CodeCompletion.MaxShortfall, 1000);

        var only = Enumerable.Range(0, 5).Select(i => string.Concat(Enumerable.Repeat(huge + $"    return x * {i} + y_1\n", 10))).ToList();
        var e = Assert.Throws<ArgumentException>(() => new PromptBuilder(new HeldoutCorpus(only, Tok), Tok).Build(RulerTasks.CodeCompletion, 1000, null, 1));
        Assert.Contains("all start more than 64 tokens short", e.Message);
    }

    [Theory]
    [InlineData("    return x * 12 + y", true)]
    [InlineData("self.assertEqual(a, b)", true)]
    [InlineData("", false)]
    [InlineData("        ", false)]
    [InlineData("    })", false)]
    [InlineData("  ]]]]]]]]]]]]]]", false)] // long but only brackets
    [InlineData("pass", false)]
    [InlineData("    # explain the next step at length", false)]
    public void NonTrivialLinesAreLongEnoughCodeNotCommentsOrBrackets(string line, bool expected) =>
        Assert.Equal(expected, CodeCompletion.IsNonTrivial(line));

    [Theory]
    [InlineData("kitten", "sitting", 5)] // LCS "ittn": 6 + 7 − 2·4
    [InlineData("abcd", "abce", 2)] // a substitution is a deletion and an insertion
    [InlineData("abc", "", 3)]
    [InlineData("", "", 0)]
    [InlineData("flaw", "lawn", 2)] // delete f, insert n
    [InlineData("return x", "return x", 0)]
    public void InsertDeleteDistanceByHand(string a, string b, int distance)
    {
        Assert.Equal(distance, AnswerScorer.InsertDeleteDistance(a, b));
        Assert.Equal(distance, AnswerScorer.InsertDeleteDistance(b, a));
    }

    [Theory]
    [InlineData("kitten", "sitting", 100 * 8 / 13.0)] // fuzz.ratio 61.54
    [InlineData("abcd", "abce", 75.0)]
    [InlineData("abc", "", 0.0)]
    [InlineData("", "", 100.0)]
    [InlineData("x = foo(a, b)", "x = foo(a, c)", 100 * 24 / 26.0)]
    public void EditSimilarityByHand(string a, string b, double similarity) =>
        Assert.Equal(similarity, AnswerScorer.EditSimilarity(a, b), 10);

    [Fact]
    public void CodeCompletionScoresTheFirstLineByEditSimilarityAndKeepsExactMatch()
    {
        var right = AnswerScorer.Score(RulerTasks.CodeCompletion, "    return x + 1", [], "  return x + 1  \n    y = 2\n");
        Assert.True(right.Exact);
        Assert.Equal(1.0, right.Score);
        var near = AnswerScorer.Score(RulerTasks.CodeCompletion, "    return x + 1", [], "    return x + 2\nreturn x + 1");
        Assert.False(near.Exact);
        Assert.Equal(AnswerScorer.EditSimilarity("return x + 2", "return x + 1") / 100, near.Score, 12);
        Assert.Equal(near.Score, near.Partial);
        Assert.Equal(1 - 2 / 24.0, near.Score, 12);
        var empty = AnswerScorer.Score(RulerTasks.CodeCompletion, "    return x + 1", [], "\n    return x + 1");
        Assert.Equal(0.0, empty.Score);
        Assert.False(RulerTasks.GivesPartialCredit(RulerTasks.CodeCompletion));
        Assert.False(RulerTasks.PlacesNeedles(RulerTasks.CodeCompletion));
    }
}
