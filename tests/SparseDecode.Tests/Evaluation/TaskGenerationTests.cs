using System.Text.RegularExpressions;
using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>The C# task generators against the formats of tools/reference-model/tasks.py, and prompts built at
/// token level: answers present in the needles, needles at the asked depth, lengths as asked, seeds reproducible.</summary>
public class TaskGenerationTests
{
    private static readonly ToyTokenizer Tok = new();
    private static readonly PromptBuilder Builder = new(new HeldoutCorpus(ToyTokenizer.Documents(40, 120), Tok), Tok);

    [Fact]
    public void PasskeyFormatAndRange()
    {
        for (int seed = 0; seed < 200; seed++)
        {
            var t = RulerTasks.MakePasskey(new Random(seed));
            var m = Regex.Match(t.Needles.Single(), @"^# The pass key is (\d+)\. Remember it\. (\d+) is the pass key\.\n$");
            Assert.True(m.Success, t.Needles[0]);
            Assert.Equal(m.Groups[1].Value, m.Groups[2].Value);
            int v = int.Parse(m.Groups[1].Value);
            Assert.InRange(v, 10_000, 99_999);
            Assert.Equal("# What is the pass key? The pass key is", t.Question);
            Assert.Equal(" " + m.Groups[1].Value, t.Answer);
        }
    }

    [Fact]
    public void MultiKeyHasFourDistractorsAndTheAskedKeysNumber()
    {
        for (int seed = 0; seed < 100; seed++)
        {
            var t = RulerTasks.MakeMultiKey(new Random(seed));
            Assert.Equal(5, t.Needles.Count);
            var pairs = t.Needles.Select(n => Regex.Match(n, @"^# One of the special magic numbers for ([a-z]+) is: (\d{7})\.\n$")).ToList();
            Assert.All(pairs, p => Assert.True(p.Success));
            Assert.Equal(5, pairs.Select(p => p.Groups[1].Value).Distinct().Count());
            Assert.All(pairs, p => Assert.Equal(6, p.Groups[1].Value.Length)); // three two-letter syllables
            Assert.All(pairs, p => Assert.InRange(int.Parse(p.Groups[2].Value), 1_000_000, 9_999_999));
            var q = Regex.Match(t.Question, @"^# What is the special magic number for ([a-z]+)\? The special magic number for \1 is:$");
            Assert.True(q.Success, t.Question);
            var asked = pairs.Single(p => p.Groups[1].Value == q.Groups[1].Value);
            Assert.Equal(" " + asked.Groups[2].Value, t.Answer);
        }
    }

    [Fact]
    public void MultiValueAndMultiQueryAnswersListEveryNeedleValue()
    {
        for (int seed = 0; seed < 50; seed++)
        {
            var mv = RulerTasks.MakeMultiValue(new Random(seed));
            Assert.Equal(4, mv.Needles.Count);
            Assert.Single(mv.Needles.Select(n => n.Split(' ')[7]).Distinct()); // one key
            Assert.Equal(" " + string.Join(", ", mv.Needles.Select(n => Regex.Match(n, @"(\d{7})").Value)), mv.Answer);
            Assert.EndsWith("are:", mv.Question);

            var mq = RulerTasks.MakeMultiQuery(new Random(seed));
            Assert.Equal(4, mq.Needles.Count);
            var keys = Regex.Match(mq.Question, @"^# What are the special magic numbers for ([a-z]+), ([a-z]+), ([a-z]+) and ([a-z]+)\? They are:$");
            Assert.True(keys.Success, mq.Question);
            var expected = Enumerable.Range(1, 4).Select(i =>
                Regex.Match(mq.Needles.Single(n => n.Contains($" {keys.Groups[i].Value} is:")), @"(\d{7})").Value);
            Assert.Equal(" " + string.Join(", ", expected), mq.Answer);
            Assert.Equal(expected, mq.Items);
        }
    }

    [Fact]
    public void VarTrackChainResolvesToTheAskedValueAndTheDistractorIsOrdered()
    {
        for (int seed = 0; seed < 100; seed++)
        {
            var t = RulerTasks.MakeVarTrack(new Random(seed));
            Assert.Equal(6, t.Needles.Count);
            var value = Regex.Match(t.Question, @"^# Which variables are assigned the value (\d{5})\? They are:$").Groups[1].Value;
            Assert.NotEqual("", value);
            // resolve every assignment in needle order
            var env = new Dictionary<string, string>();
            foreach (string n in t.Needles)
            {
                var m = Regex.Match(n, @"^# VAR ([A-Z]{5}) = (?:VAR ([A-Z]{5})|(\d{5}))\n$");
                Assert.True(m.Success, n);
                env[m.Groups[1].Value] = m.Groups[2].Success ? env[m.Groups[2].Value] : m.Groups[3].Value; // throws if used before set
            }
            var holders = env.Where(kv => kv.Value == value).Select(kv => kv.Key).ToHashSet();
            Assert.Equal(4, t.Items.Count);
            Assert.Equal(holders, t.Items.ToHashSet());
            Assert.Equal(" " + string.Join(", ", t.Items), t.Answer);
        }
    }

    [Fact]
    public void CommonWordsAreTheThreeMostFrequent()
    {
        for (int seed = 0; seed < 100; seed++)
        {
            var t = RulerTasks.MakeCommonWords(new Random(seed));
            var words = t.Needles.SelectMany(n => Regex.Match(n, @"^# Words: ([a-z ]+)\n$").Groups[1].Value.Split(' ')).ToList();
            Assert.All(t.Needles.SkipLast(1), n => Assert.Equal(8, n.Split(' ').Length - 2));
            var counts = words.GroupBy(w => w).ToDictionary(g => g.Key, g => g.Count());
            Assert.Equal(12, counts.Count);
            Assert.Equal([12, 9, 6], t.Items.Select(w => counts[w]));
            Assert.All(counts.Where(kv => !t.Items.Contains(kv.Key)), kv => Assert.InRange(kv.Value, 1, 3));
            Assert.All(counts.Keys, w => Assert.Equal(4, w.Length));
        }
    }

    [Theory]
    [InlineData("passkey")]
    [InlineData("multikey")]
    [InlineData("multivalue")]
    [InlineData("multiquery")]
    [InlineData("vartrack")]
    [InlineData("cwe")]
    public void PromptHoldsItsNeedlesWholeAtLineStartsAndTheAnswerIsInThem(string task)
    {
        foreach (int length in new[] { 600, 2000 })
        {
            var s = Builder.Build(task, length, 0.5, seed: 11 + length);
            Assert.InRange(s.Prompt.Length, length - 80, length); // cut at the last line end of the haystack: one line at most
            Assert.Equal(Tok.BeginOfText, s.Prompt[0]);
            Assert.Equal(s.Prompt.Length, 1 + s.HaystackLength + s.NeedleLengths.Sum() + s.QuestionLength);
            string text = Tok.Decode(s.Prompt);
            var needleTexts = s.NeedleStarts.Select((st, i) => Tok.Decode(s.Prompt.AsSpan(st, s.NeedleLengths[i]))).ToList();
            foreach (string n in needleTexts)
            {
                Assert.StartsWith("# ", n);
                Assert.EndsWith("\n", n);
            }
            foreach (int st in s.NeedleStarts) Assert.True(st == 1 || s.Prompt[st - 1] == '\n', "a needle starts a line");
            // every expected answer item is written in a needle line
            string joined = string.Concat(needleTexts);
            Assert.All(s.Items, item => Assert.Contains(item, joined));
            string question = Tok.Decode(s.Prompt.AsSpan(s.Prompt.Length - s.QuestionLength));
            Assert.Matches(@"^# (What|Which) .*(:| is)$", question);
            Assert.Equal('\n', text[^(question.Length + 1)]); // the question starts a line
        }
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.25)]
    [InlineData(0.5)]
    [InlineData(0.75)]
    [InlineData(0.95)]
    public void NeedlesLieAtTheAskedDepth(double depth)
    {
        foreach (string task in RulerTasks.NeedleTasks)
            for (int seed = 0; seed < 5; seed++)
            {
                var s = Builder.Build(task, 4000, depth, seed);
                int hay = s.HaystackLength;
                int before = 0;
                for (int i = 0; i < s.NeedleStarts.Length; i++)
                {
                    // haystack tokens before this needle, as a share of the haystack
                    double at = (s.NeedleStarts[i] - 1 - before) / (double)hay;
                    before += s.NeedleLengths[i];
                    Assert.InRange(at, depth - 0.02, Math.Min(1, depth + 0.1) + 0.02);
                }
            }
    }

    [Fact]
    public void SameSeedSamePromptOtherSeedOtherPrompt()
    {
        foreach (string task in RulerTasks.All)
        {
            var a = Builder.Build(task, 1500, 0.3, seed: 42);
            var b = Builder.Build(task, 1500, 0.3, seed: 42);
            var c = Builder.Build(task, 1500, 0.3, seed: 43);
            Assert.Equal(a.Prompt, b.Prompt);
            Assert.Equal(a.Answer, b.Answer);
            Assert.NotEqual(a.Prompt, c.Prompt);
        }
    }

    [Fact]
    public void PerplexitySampleIsHeldOutCodeWithItsContinuation()
    {
        var s = Builder.Build(RulerTasks.Perplexity, 1000, null, seed: 5, continuation: 32);
        Assert.Equal(1000, s.Prompt.Length);
        Assert.Equal(32, s.Answer.Length);
        Assert.Equal(Tok.BeginOfText, s.Prompt[0]);
        string all = Tok.Decode([.. s.Prompt, .. s.Answer]);
        Assert.Contains(" = compute(", all);
    }

    [Fact]
    public void PerplexityScoresTheSameContinuationAtEveryContext()
    {
        var longest = Builder.Build(RulerTasks.Perplexity, 1000, null, seed: 9, continuation: 24, perplexityWindow: 1000);
        var shorter = Builder.Build(RulerTasks.Perplexity, 600, null, seed: 9, continuation: 24, perplexityWindow: 1000);
        Assert.Equal(longest.Answer, shorter.Answer);
        Assert.Equal(600, shorter.Prompt.Length);
        Assert.Equal(Tok.BeginOfText, shorter.Prompt[0]);
        // the shorter prompt is the end of the longer one's text: the same history, less of it
        Assert.Equal(longest.Prompt[^599..], shorter.Prompt[1..]);
    }

    [Fact]
    public void TooShortPromptIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => Builder.Build("cwe", 100, 0.5, 1));
        Assert.Contains("longer context", e.Message);
    }

    [Fact]
    public void StableSeedDependsOnEveryPart()
    {
        int a = RandomExtensions.StableSeed(1, "passkey", 1024, 0);
        Assert.Equal(a, RandomExtensions.StableSeed(1, "passkey", 1024, 0));
        Assert.NotEqual(a, RandomExtensions.StableSeed(2, "passkey", 1024, 0));
        Assert.NotEqual(a, RandomExtensions.StableSeed(1, "passkey", 1024, 1));
        Assert.NotEqual(a, RandomExtensions.StableSeed(1, "multikey", 1024, 0));
    }
}
