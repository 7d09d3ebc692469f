using CsCheck;
using SparseDecode.Tokenization;
using Hf = Tokenizers.DotNet.Tokenizer;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Hugging Face's own tokenizers (the Rust library, through Tokenizers.DotNet) as the oracle: on random and
/// adversarial strings our encoding of every tokenizer.json the project ships equals theirs, special tokens
/// included. CsCheck shrinks a failing string to a short one before reporting it.</summary>
public class HuggingFaceOracleTests
{
    public static TheoryData<string> Files()
    {
        var files = new TheoryData<string>();
        foreach (string dir in Directory.GetDirectories(Path.Combine(Fixtures.Root, "tokenizers")).Order(StringComparer.Ordinal))
            files.Add(Path.Combine(dir, "tokenizer.json"));
        files.Add(Path.Combine(Fixtures.BundledModel, "tokenizer.json"));
        return files;
    }

    // pieces that stress pre-tokenizer splits, byte fallback, normalizers and added-token matching
    private static readonly string[] Adversarial =
    [
        " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u200b", "\ufeff",
        "'s", "'S", "'ll", "'re", "'ve", "'m", "'t", "'d", "''", "\"",
        "123", "1234567", "3.14", "-", "_", "__init__", "=>", "!=", "::", "...", "#", "//", "/*",
        "def", " def", "Hello", "HELLO", "hello", "naïve", "Ñandú", "straße", "İ", "ǅ", "ﬁ", "Å", "Å",
        "é", "é", "ß", "ΣΑΣ", "中文", "日本語", "한국어", "العربية", "עברית", "हिन्दी", "ไทย",
        "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "\u0301", "a\u0308", "\u0000", "\u0007", "\u007f", "\u0085",
        "<s>", "</s>", "<unk>", "<pad>", "<|endoftext|>", "<|im_start|>", "<|begin_of_text|>", "<|eot_id|>", "<|", "|>",
        "▁", "Ġ", "Ċ", "<0x0A>", "\\n",
    ];

    private static readonly Gen<string> Piece = Gen.Frequency(
        (4, (IGen<string>)Gen.OneOf(Adversarial)),
        (3, (IGen<string>)Gen.String[Gen.Char.AlphaNumeric, 1, 8]),
        (2, (IGen<string>)Gen.Int[0x20, 0x2FFFF].Where(c => c is < 0xD800 or > 0xDFFF).Select(char.ConvertFromUtf32)),
        (1, (IGen<string>)Gen.Int[0, 0x10FFFF].Where(c => c is < 0xD800 or > 0xDFFF).Select(char.ConvertFromUtf32)));

    private static readonly Gen<string> Text = Piece.Array[0, 24].Select(string.Concat);

    [Theory]
    [MemberData(nameof(Files))]
    public void OurEncodingEqualsHuggingFaces(string file)
    {
        var ours = Tokenizer.FromFile(file);
        using var theirs = new Hf(vocabPath: file);
        Text.Sample(s =>
        {
            int[] expected = Array.ConvertAll(theirs.Encode(s), id => (int)id);
            Assert.Equal(expected, ours.Encode(s));
        }, iter: 400, threads: 1);
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void LongMixedTextEncodesTheSame(string file)
    {
        var ours = Tokenizer.FromFile(file);
        using var theirs = new Hf(vocabPath: file);
        string text = string.Concat(Enumerable.Range(0, 40).SelectMany(_ => Adversarial)) + File.ReadAllText(file)[..2000];
        Assert.Equal(Array.ConvertAll(theirs.Encode(text), id => (int)id), ours.Encode(text));
    }
}
