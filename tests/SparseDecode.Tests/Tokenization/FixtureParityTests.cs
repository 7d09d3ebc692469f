using SparseDecode.Tokenization;
using Xunit;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Every vector Hugging Face produced must come out identical: ids with and without special tokens,
/// and both decodings.</summary>
public sealed class FixtureParityTests
{
    [Theory]
    [MemberData(nameof(FixtureVectors.Folders), MemberType = typeof(FixtureVectors))]
    public void EncodingsAndDecodingsMatchHuggingFace(string folder)
    {
        var tok = Tokenizer.FromFile(FixtureVectors.TokenizerPath(folder));
        var vectors = FixtureVectors.Load(folder);
        Assert.NotEmpty(vectors);
        var failures = new List<string>();
        foreach (var v in vectors)
        {
            string label = Show(v.Text);
            int[] ids = tok.Encode(v.Text, addSpecialTokens: false);
            if (!ids.SequenceEqual(v.Ids)) failures.Add($"{label}: ids [{string.Join(",", ids)}] != [{string.Join(",", v.Ids)}]");
            int[] withSpecial = tok.Encode(v.Text, addSpecialTokens: true);
            if (!withSpecial.SequenceEqual(v.IdsWithSpecial))
                failures.Add($"{label}: ids_with_special [{string.Join(",", withSpecial)}] != [{string.Join(",", v.IdsWithSpecial)}]");
            string decoded = tok.Decode(v.Ids, skipSpecialTokens: false);
            if (decoded != v.Decoded) failures.Add($"{label}: decoded {Show(decoded)} != {Show(v.Decoded)}");
            string skipped = tok.Decode(v.Ids, skipSpecialTokens: true);
            if (skipped != v.DecodedSkipSpecial) failures.Add($"{label}: decoded_skip_special {Show(skipped)} != {Show(v.DecodedSkipSpecial)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches in {folder}:\n" + string.Join("\n", failures.Take(30)));
    }

    [Theory]
    [MemberData(nameof(FixtureVectors.Folders), MemberType = typeof(FixtureVectors))]
    public void VocabularyLookupsRoundTrip(string folder)
    {
        var tok = Tokenizer.FromFile(FixtureVectors.TokenizerPath(folder));
        Assert.True(tok.VocabSize > 256);
        for (int id = 0; id < tok.VocabSize; id++)
        {
            string? token = tok.IdToToken(id);
            Assert.NotNull(token);
            Assert.Equal(id, tok.TokenToId(token));
        }
        Assert.True(tok.IsSpecial(tok.TokenToId(folder == "sentencepiece-bpe" ? "<s>" : "<|endoftext|>")!.Value));
    }

    [Theory]
    [MemberData(nameof(FixtureVectors.Folders), MemberType = typeof(FixtureVectors))]
    public void ConcurrentEncodingGivesTheSameIds(string folder)
    {
        // One tokenizer is shared by all requests; its word cache and scratch buffers must not leak between threads.
        var tok = Tokenizer.FromFile(FixtureVectors.TokenizerPath(folder));
        var vectors = FixtureVectors.Load(folder);
        Parallel.For(0, vectors.Count * 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var v = vectors[i % vectors.Count];
            Assert.Equal(v.Ids, tok.Encode(v.Text, addSpecialTokens: false));
        });
    }

    static string Show(string s)
    {
        string escaped = s.Replace("\\", "\\\\").Replace("\n", "\\n").Replace("\r", "\\r").Replace("\t", "\\t");
        return "\"" + (escaped.Length > 60 ? escaped[..60] + "…" : escaped) + "\"";
    }
}
