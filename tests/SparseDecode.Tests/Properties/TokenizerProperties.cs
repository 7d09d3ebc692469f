using System.Text;
using CsCheck;
using SparseDecode.Fuzz;
using SparseDecode.Tokenization;

namespace SparseDecode.Tests.Properties;

/// <summary>Properties of the tokenizer loader and the tokenizers it builds: byte-level files decode what they
/// encode for any text, and any corruption of a file is either loaded (and then encodes safely) or refused with a
/// TokenizerFormatException.</summary>
public class TokenizerProperties
{
    private static readonly Lazy<Tokenizer> Gpt2 = new(() => Tokenizer.FromFile(Path.Combine(Fixtures.Root, "tokenizers", "gpt2-bytelevel", "tokenizer.json")));

    // Any UTF-16 text without lone surrogates (a lone one decodes as U+FFFD, and the server refuses it): letters,
    // digits, spaces, symbols, emoji, and the special token's text.
    private static readonly Gen<string> Texts = Gen.OneOf(
        Gen.OneOf(Gen.Char["ab \n\t'sS1234567890.,:;!?-_()[]{}\"<|>endoftxé中"].Select(c => c.ToString()), Gen.Const("😀"), Gen.Const("𝐀"))
            .Array[0, 40].Select(a => string.Concat(a)),
        Gen.String.Where(s => !SparseDecode.JsonText.HasLoneSurrogate(s)),
        Gen.Const("<|endoftext|>"));

    [Fact]
    public void ByteLevelDecodeInvertsEncode() =>
        Texts.Sample(text =>
        {
            var t = Gpt2.Value;
            var ids = t.Encode(text, addSpecialTokens: false);
            Assert.All(ids, id => Assert.InRange(id, 0, t.VocabSize - 1));
            string back = t.Decode(ids);
            Assert.True(text == back, $"{string.Join(" ", text.Select(c => ((int)c).ToString("X4")))} came back as {string.Join(" ", back.Select(c => ((int)c).ToString("X4")))}");
        }, iter: 500, threads: 1);

    [Fact]
    public void CorruptFilesLoadSafelyOrFailWithAFormatError()
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "corpus", "tokenizer");
        var seeds = Directory.GetFiles(dir).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToArray();
        Gen.Select(Gen.Int[0, seeds.Length - 1], Gen.Int).Sample((which, seed) =>
            FuzzTargets.TokenizerFile(FuzzTargets.Mutate(seeds[which], seeds[(which + 1) % seeds.Length], new Random(seed))),
            iter: 150, threads: 1);
    }

    /// <summary>Structural corruption reaches past the JSON parser: nodes anywhere in a valid file replaced by
    /// values of another type or range.</summary>
    [Fact]
    public void AnyNodeReplacedLoadsSafelyOrFailsWithAFormatError() =>
        JsonMutation.Of("tokenizer").Sample(bytes => FuzzTargets.TokenizerFile(bytes), iter: 400, threads: 1);

    [Fact]
    public void SplitPatternsOnBothEnginesAgree() =>
        Gen.Select(Gen.OneOf(Gen.Const("a|ab"), Gen.Const("(a|aa)+"), Gen.Const(@"\p{L}+|\p{N}{1,3}"), Gen.Const("b*a?"), Gen.Const("[ab]{2,3}")),
            Gen.Char["ab1 é"].Array[0, 20].Select(a => new string(a))).Sample((pattern, text) =>
        {
            var fast = new List<(int, int)>();
            CodePointRegex.FromDotNet(pattern).FindMatches(text, fast);
            var classic = new System.Text.RegularExpressions.Regex(pattern).Matches(text).Select(m => (m.Index, m.Index + m.Length));
            Assert.Equal(classic, fast);
        }, iter: 500, threads: 1);
}
