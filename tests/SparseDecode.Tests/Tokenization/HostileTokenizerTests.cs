using System.Diagnostics;
using System.Text.Json.Nodes;
using SparseDecode.Tokenization;
using Xunit;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Tokenizer files crafted to hang or bloat: a backtracking-exponential split regex and tens of thousands
/// of long added tokens. Each is bounded in seconds and megabytes.</summary>
public sealed class HostileTokenizerTests : IDisposable
{
    readonly TokenizerTestFiles _files = new();

    public void Dispose() => _files.Dispose();

    static JsonObject Split(string regex) => new()
    {
        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = "Isolated", ["invert"] = false,
    };

    /// <summary>(a|aa)+$ once took 120 s on 43 characters; the non-backtracking engine takes it in linear time.</summary>
    [Fact]
    public void ExponentialPatternRunsInLinearTime()
    {
        var tok = _files.Load(TokenizerTestFiles.ByteLevel(Split("(a|aa)+$")));
        var watch = Stopwatch.StartNew();
        var ids = tok.Encode(new string('a', 5000) + "b", addSpecialTokens: false);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"Took {watch.Elapsed}.");
        Assert.Equal(5001, ids.Length);
    }

    /// <summary>With a lookahead the pattern needs the backtracking engine; the match timeout bounds it and the text
    /// is refused with one sentence.</summary>
    [Fact]
    public void ExponentialPatternWithALookaroundTimesOut()
    {
        var tok = _files.Load(TokenizerTestFiles.ByteLevel(Split("(a|aa)+(?!a)c")));
        var watch = Stopwatch.StartNew();
        var e = Assert.Throws<TokenizerTimeoutException>(() => tok.Encode(new string('a', 60), addSpecialTokens: false));
        Assert.True(watch.Elapsed < CodePointRegex.MatchTimeout * 3, $"Took {watch.Elapsed}.");
        Assert.Contains("backtracks catastrophically", e.Message);
    }

    /// <summary>Found by the fuzz smoke run: a lone surrogate or invalid UTF-8 escaped as an InvalidOperationException.</summary>
    [Fact]
    public void InvalidUnicodeInTheFileIsRefused()
    {
        string json = TokenizerTestFiles.ByteLevel().ToJsonString().Replace("endoftext", "end\\udc00");
        var e = Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromFile(_files.Write("tokenizer.json", json)));
        Assert.Contains("lone surrogate (under 'added_tokens')", e.Message);
        byte[] bytes = [.. System.Text.Encoding.UTF8.GetBytes("{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{\""), 0xC0, 0x80, .. "\":0},\"merges\":[]}}"u8];
        Assert.Contains("not valid UTF-8", Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromJson(bytes, "t.json")).Message);

        _files.Write("tokenizer.json", TokenizerTestFiles.ByteLevel().ToJsonString());
        File.WriteAllBytes(Path.Combine(_files.Dir, "tokenizer_config.json"), [.. "{\"eos_token\":\"\\ud800\"}"u8]);
        var c = Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromDirectory(_files.Dir));
        Assert.EndsWith("tokenizer_config.json: holds a string that is not valid UTF-8 or has a lone surrogate (under 'eos_token').", c.Message);
    }

    /// <summary>Found by structural fuzzing: a vocabulary id of 2^31 − 1 overflowed the tokenizer's id count.</summary>
    [Fact]
    public void HugeVocabularyIdsAreRefused()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["model"]!["vocab"]!["abc"] = int.MaxValue;
        var e = Assert.Throws<TokenizerFormatException>(() => _files.Load(json));
        Assert.Contains("above the largest this engine accepts (16777215)", e.Message);
    }

    [Theory]
    [InlineData("a|ab", "abab")]
    [InlineData("ab|a", "abab")]
    [InlineData(@"\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+", "x12345 ..y")]
    [InlineData("(a|aa)+$", "aaab\naa")]
    public void BothEnginesFindTheSameMatches(string pattern, string text)
    {
        var fast = new List<(int, int)>();
        CodePointRegex.FromDotNet(pattern).FindMatches(text, fast);
        var classic = new List<(int, int)>();
        foreach (System.Text.RegularExpressions.Match m in new System.Text.RegularExpressions.Regex(pattern).Matches(text))
            classic.Add((m.Index, m.Index + m.Length));
        Assert.Equal(classic, fast);
    }

    /// <summary>20,000 added tokens of 210 characters once took 1 GB (a trie of dictionaries); the matcher is now the
    /// sorted patterns themselves.</summary>
    [Fact]
    public void ManyLongAddedTokensStayLinearInMemory()
    {
        var json = TokenizerTestFiles.ByteLevel();
        var added = json["added_tokens"]!.AsArray();
        var vocab = json["model"]!["vocab"]!.AsObject();
        string prefix = new('x', 200);
        for (int i = 0; i < 20_000; i++)
        {
            string content = prefix + i.ToString("D10");
            added.Add(new JsonObject
            {
                ["id"] = 1000 + i, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            });
        }
        string path = _files.Write("tokenizer.json", json.ToJsonString());
        json = null;
        // Counted on this thread only (tests in other classes run in parallel): what loading allocates, an upper
        // bound of what it keeps. The token texts alone are 8.4 MB as UTF-16, the file 4.5 MB.
        long before = GC.GetAllocatedBytesForCurrentThread();
        var tok = Tokenizer.FromFile(path);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 120L << 20, $"Loading allocated {allocated >> 20} MB (a trie of dictionaries took about 1 GB).");
        string wanted = prefix + 12345.ToString("D10");
        Assert.Equal([(int)tok.TokenToId(wanted)!, 104], tok.Encode(wanted + "h", addSpecialTokens: false));
        Assert.Equal([120, 120], tok.Encode("xx", addSpecialTokens: false)[..2]);
        GC.KeepAlive(tok);
    }
}
