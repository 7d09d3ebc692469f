using System.Text;
using SparseDecode.Tokenization;
using Xunit;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Pushing ids one at a time must reproduce Decode exactly and never show a broken character.</summary>
public sealed class StreamingDecoderTests : IDisposable
{
    readonly TokenizerTestFiles _files = new();

    public void Dispose() => _files.Dispose();

    static readonly string[] Texts =
    [
        "Hello world", "  leading and trailing  ", "emoji 👍🏽 and 🇫🇷 flags 😀😀😀", "日本語のテキストと中文",
        "naïve café — déjà vu", "mixed<|endoftext|>special tokens<|pad|>here<s> and </s>", "\n\n\t\n", "a",
        "def f(x):\n    return x * 2\n", "Ελληνικά και русский текст", "\u00a0nbsp\u2009thin\u3000ideo",
    ];

    [Theory]
    [MemberData(nameof(FixtureVectors.Folders), MemberType = typeof(FixtureVectors))]
    public void PushingFixtureTextsOneIdAtATimeEqualsDecode(string folder)
    {
        var tok = Tokenizer.FromFile(FixtureVectors.TokenizerPath(folder));
        var texts = Texts.Concat(FixtureVectors.Load(folder).Select(v => v.Text));
        foreach (string text in texts)
            foreach (bool skip in new[] { true, false })
                AssertStreams(tok, tok.Encode(text, addSpecialTokens: true), skip);
    }

    [Theory]
    [MemberData(nameof(FixtureVectors.Folders), MemberType = typeof(FixtureVectors))]
    public void RandomIdSequencesStreamExactly(string folder)
    {
        // Random ids include stray byte tokens, partial UTF-8 and special tokens in any order.
        var tok = Tokenizer.FromFile(FixtureVectors.TokenizerPath(folder));
        var rng = new Random(1234);
        for (int round = 0; round < 300; round++)
        {
            var ids = new int[rng.Next(1, 40)];
            for (int i = 0; i < ids.Length; i++)
                ids[i] = rng.Next(4) == 0 ? rng.Next(0, Math.Min(300, tok.VocabSize)) : rng.Next(0, tok.VocabSize + 3);
            AssertStreams(tok, ids, skip: round % 2 == 0, checkReplacement: false);
        }
    }

    [Fact]
    public void ByteFallbackRunIsHeldUntilItEnds()
    {
        var tok = _files.Load(TokenizerTestFiles.SentencePiece());
        var stream = tok.CreateStreamingDecoder();
        // ▁ a, then "é" as two byte tokens, then a: nothing of the byte run shows before it is complete and closed.
        Assert.Equal("a", stream.Push(259) + stream.Push(260));
        Assert.Equal("", stream.Push(3 + 0xC3));
        Assert.Equal("", stream.Push(3 + 0xA9));
        Assert.Equal("éa", stream.Push(260));
        Assert.Equal("", stream.Flush());
        // A run a later byte turns invalid: "a" as <0x61> then a lone <0xC3> decode to two U+FFFD together.
        Assert.Equal("", stream.Push(3 + 0x61) + stream.Push(3 + 0xC3));
        Assert.Equal("\uFFFD\uFFFDa", stream.Push(260));
        Assert.Equal("\uFFFD\uFFFDa", tok.Decode([3 + 0x61, 3 + 0xC3, 260]));
    }

    [Fact]
    public void ByteLevelWaitsForTheLastByteOfACharacter()
    {
        var tok = _files.Load(TokenizerTestFiles.ByteLevel());
        var stream = tok.CreateStreamingDecoder();
        Assert.Equal("he", stream.Push(256));
        Assert.Equal("", stream.Push(0xF0));
        Assert.Equal("", stream.Push(0x9F));
        Assert.Equal("", stream.Push(0x91));
        Assert.Equal("👍", stream.Push(0x8D));
        Assert.Equal("", stream.Push(0xE6));
        Assert.Equal("\uFFFD", stream.Flush());
    }

    static void AssertStreams(Tokenizer tok, int[] ids, bool skip, bool checkReplacement = true)
    {
        string expected = tok.Decode(ids, skip);
        var stream = tok.CreateStreamingDecoder(skip);
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string chunk = stream.Push(id);
            if (checkReplacement && !expected.Contains('\uFFFD'))
                Assert.DoesNotContain('\uFFFD', chunk);
            if (chunk.Length > 0) Assert.False(char.IsHighSurrogate(chunk[^1]), "a chunk ends inside a surrogate pair");
            sb.Append(chunk);
        }
        sb.Append(stream.Flush());
        Assert.Equal(expected, sb.ToString());
    }
}
