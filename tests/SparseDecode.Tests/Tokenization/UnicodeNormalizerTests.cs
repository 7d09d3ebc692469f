using SparseDecode.Tokenization;
using Xunit;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Spot checks of the engine's own Unicode normalization (checked in full against the Unicode
/// NormalizationTest.txt when the tables were generated, and against Hugging Face in the variant vectors).</summary>
public sealed class UnicodeNormalizerTests
{
    [Theory]
    [InlineData("e\u0301", "\u00E9", "e\u0301", "\u00E9", "e\u0301")]
    [InlineData("\u1E9B\u0323", "\u1E9B\u0323", "\u017F\u0323\u0307", "\u1E69", "s\u0323\u0307")]
    [InlineData("\u1100\u1161\u11A8", "\uAC01", "\u1100\u1161\u11A8", "\uAC01", "\u1100\u1161\u11A8")]
    [InlineData("\uFB01 \u212B \u00B2", "\uFB01 \u00C5 \u00B2", "\uFB01 A\u030A \u00B2", "fi \u00C5 2", "fi A\u030A 2")]
    [InlineData("a\u0327\u0301", "\u00E1\u0327", "a\u0327\u0301", "\u00E1\u0327", "a\u0327\u0301")]
    [InlineData("plain ascii", "plain ascii", "plain ascii", "plain ascii", "plain ascii")]
    [InlineData("\U0001D400 \uFF76\uFF9E", "\U0001D400 \uFF76\uFF9E", "\U0001D400 \uFF76\uFF9E", "A \u30AC", "A \u30AB\u3099")]
    public void FormsMatchUnicode(string input, string nfc, string nfd, string nfkc, string nfkd)
    {
        Assert.Equal(nfc, UnicodeNormalizer.Normalize(input, compose: true, compatibility: false));
        Assert.Equal(nfd, UnicodeNormalizer.Normalize(input, compose: false, compatibility: false));
        Assert.Equal(nfkc, UnicodeNormalizer.Normalize(input, compose: true, compatibility: true));
        Assert.Equal(nfkd, UnicodeNormalizer.Normalize(input, compose: false, compatibility: true));
    }

    [Fact]
    public void NfcLeavesEverythingBelowCombiningMarksAlone()
    {
        // NFC skips text below U+0300 without looking it up. Appending 一 (a starter that composes with nothing)
        // forces the full algorithm, which must give back every such pair unchanged.
        for (int a = 0; a < 0x300; a += 3)
            for (int b = 0; b < 0x300; b++)
            {
                string s = $"{(char)a}{(char)b}\u4E00";
                Assert.Equal(s, UnicodeNormalizer.Normalize(s, compose: true, compatibility: false));
            }
    }
}
