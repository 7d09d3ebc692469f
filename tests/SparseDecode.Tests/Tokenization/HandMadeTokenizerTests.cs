using System.Text.Json.Nodes;
using SparseDecode.Tokenization;
using Xunit;
using SparseDecode.Server.Serving;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Encodings worked out by hand on tiny vocabularies (see <see cref="TokenizerTestFiles"/>).</summary>
public sealed class HandMadeTokenizerTests : IDisposable
{
    readonly TokenizerTestFiles _files = new();

    public void Dispose() => _files.Dispose();

    [Fact]
    public void SentencePieceMergesByRankThenPosition()
    {
        var tok = _files.Load(TokenizerTestFiles.SentencePiece());
        // "▁ab▁abc": a+b (rank 0) twice, then ▁+ab (rank 1) twice; ab+c (rank 2) is stale by then.
        Assert.Equal([264, 264, 262], tok.Encode("ab abc", addSpecialTokens: false));
        Assert.Equal([1, 264, 264, 262], tok.Encode("ab abc"));
        Assert.Equal("ab abc", tok.Decode([264, 264, 262]));
    }

    [Fact]
    public void SentencePieceByteFallbackAndAddedTokens()
    {
        var tok = _files.Load(TokenizerTestFiles.SentencePiece());
        Assert.Equal([259, 260, 3 + 0xC3, 3 + 0xA9], tok.Encode("aé", false));
        Assert.Equal("aé", tok.Decode([259, 260, 3 + 0xC3, 3 + 0xA9]));
        // An added token is cut out of the raw text; the rest is normalized on its own (and gets its own ▁).
        Assert.Equal([1, 264], tok.Encode("<s>ab", false));
        Assert.Equal([264, 2, 264], tok.Encode("ab</s>ab", false));
        Assert.Equal("<s> ab", tok.Decode([1, 264]));
        Assert.Equal("ab", tok.Decode([1, 264], skipSpecialTokens: true));
        // Empty text gets no dummy prefix; the template still adds <s>.
        Assert.Empty(tok.Encode("", false));
        Assert.Equal([1], tok.Encode(""));
        // An invalid byte run decodes to one U+FFFD per byte.
        Assert.Equal("\uFFFD\uFFFDa", tok.Decode([3 + 0xC3, 3 + 0xC3, 260]));
        Assert.True(tok.IsSpecial(1));
        Assert.False(tok.IsSpecial(260));
        Assert.Equal(266, tok.VocabSize);
        Assert.Equal(264, tok.TokenToId("▁ab"));
        Assert.Equal("<0x41>", tok.IdToToken(3 + 0x41));
        Assert.Null(tok.IdToToken(9999));
    }

    [Fact]
    public void LegacyAndArrayMergeFormatsAgree()
    {
        var legacy = _files.Load(TokenizerTestFiles.SentencePiece(new JsonArray("a b", "▁ ab", "ab c")), "a.json");
        var arrays = _files.Load(TokenizerTestFiles.SentencePiece(new JsonArray(new JsonArray("a", "b"), new JsonArray("▁", "ab"), new JsonArray("ab", "c"))), "b.json");
        Assert.Equal(legacy.Encode("abc ab cab"), arrays.Encode("abc ab cab"));
    }

    [Fact]
    public void LongSentencePieceWordIsLinearithmic()
    {
        var tok = _files.Load(TokenizerTestFiles.SentencePiece());
        string text = string.Concat(Enumerable.Repeat("ab", 60_000));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        int[] ids = tok.Encode(text, false);
        sw.Stop();
        // ▁ab then 59,999 "ab" tokens.
        Assert.Equal(60_000, ids.Length);
        Assert.Equal(264, ids[0]);
        Assert.All(ids.Skip(1), id => Assert.Equal(263, id));
        Assert.True(sw.ElapsedMilliseconds < 5000, $"took {sw.ElapsedMilliseconds} ms");
        Assert.Equal(text, tok.Decode(ids));
    }

    [Fact]
    public void ByteLevelSplitsMapsAndMerges()
    {
        var tok = _files.Load(TokenizerTestFiles.ByteLevel());
        // "hello" → he ll o; " the" → Ġthe.
        Assert.Equal([256, 259, 'o', 258], tok.Encode("hello the", false));
        Assert.Equal([260, 256, 259, 'o', 258], tok.Encode("hello the"));
        Assert.Equal("hello the", tok.Decode([256, 259, 'o', 258]));
        Assert.Equal([0xF0, 0x9F, 0x91, 0x8D], tok.Encode("👍", false));
        Assert.Equal("👍", tok.Decode([0xF0, 0x9F, 0x91, 0x8D]));
        Assert.Equal("\uFFFD", tok.Decode([0xF0, 0x9F]));
        Assert.Equal([256, 260, 258], tok.Encode("he<|endoftext|> the", false));
        Assert.Equal("he<|endoftext|> the", tok.Decode([256, 260, 258]));
        Assert.Equal("he the", tok.Decode([256, 260, 258], skipSpecialTokens: true));
    }

    [Fact]
    public void Llama3SplitRegexTreatsSurrogatePairsAsOneCharacter()
    {
        const string pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        var split = new SplitPreTokenizer(TextPattern.FromRegex(CodePointRegex.FromOniguruma(pattern)), SplitBehavior.Isolated, invert: false);
        var output = new List<PreToken>();
        split.PreTokenize([new PreToken("𝐀he 𝟏𝟐𝟑𝟒'ſx 😀!", true)], output);
        // 𝐀 is a letter and 𝟏 a digit (both outside the BMP); ſ folds to s under (?i), so 'ſ is a contraction.
        Assert.Equal(["𝐀he", " ", "𝟏𝟐𝟑", "𝟒", "'ſ", "x", " 😀!"], output.Select(p => p.Text));
    }

    [Fact]
    public void Gpt2RegexKeepsEmojiRunsTogether()
    {
        var tok = _files.Load(TokenizerTestFiles.ByteLevel());
        Assert.Equal("a 𝐀 😀👍🏽 b", tok.Decode(tok.Encode("a 𝐀 😀👍🏽 b", false)));
        var pre = new ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: true);
        var output = new List<PreToken>();
        pre.PreTokenize([new PreToken("hi 😀👍🏽 𝐀x", true)], output);
        Assert.Equal(new[] { "hi", " 😀👍🏽", " 𝐀x" }.Select(ByteLevelMapping.Encode), output.Select(p => p.Text));
    }

    [Fact]
    public void ModelWithoutTypeIsBpe()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["model"]!.AsObject().Remove("type");
        Assert.Equal([1, 264, 264, 262], _files.Load(json).Encode("ab abc"));
    }

    [Fact]
    public void IgnoreMergesUsesWholeWordFromVocabulary()
    {
        var json = TokenizerTestFiles.ByteLevel(ignoreMerges: true);
        json["model"]!["vocab"]!["hello"] = 261;
        var tok = _files.Load(json);
        Assert.Equal([261, 258], tok.Encode("hello the", false));
    }

    [Fact]
    public void AddedTokenStripFlagsAbsorbWhitespace()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["added_tokens"]!.AsArray().Add(new JsonObject
        {
            ["id"] = 266, ["content"] = "<mask>", ["single_word"] = false, ["lstrip"] = true, ["rstrip"] = true,
            ["normalized"] = false, ["special"] = true,
        });
        var tok = _files.Load(json);
        // The spaces around <mask> belong to it, so both sides encode as if the text ended / began there.
        Assert.Equal(tok.Encode("ab", false).Concat([266]).Concat(tok.Encode("c", false)), tok.Encode("ab  <mask>  c", false));
    }

    [Fact]
    public void ConfigSuppliesBosEosAndTemplate()
    {
        _files.Write("m/tokenizer.json", TokenizerTestFiles.SentencePiece().ToJsonString());
        _files.Write("m/tokenizer_config.json", """
            {"bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "</s>"}, "chat_template": "{{ messages }}"}
            """);
        var tok = Tokenizer.FromDirectory(Path.Combine(_files.Dir, "m"));
        Assert.Equal("<s>", tok.BosToken);
        Assert.Equal("</s>", tok.EosToken);
        Assert.Equal("{{ messages }}", tok.ChatTemplate);

        _files.Write("n/tokenizer.json", TokenizerTestFiles.SentencePiece().ToJsonString());
        var bare = Tokenizer.FromDirectory(Path.Combine(_files.Dir, "n"));
        Assert.Null(bare.ChatTemplate);
        Assert.Null(bare.BosToken);
    }
}
