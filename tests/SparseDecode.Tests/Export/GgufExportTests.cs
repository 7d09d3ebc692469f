using SparseDecode.Export;
using SparseDecode.Model;
using SparseDecode.Tokenization;

namespace SparseDecode.Tests.Export;

/// <summary>export-gguf's file read back with an independent reader: llama.cpp's names and metadata keys, every
/// tensor's bytes (q/k rows in llama.cpp's order), and the tokenizer.</summary>
public class GgufExportTests
{
    /// <summary>A copy of a fixture checkpoint with the bundled model's tokenizer beside it.</summary>
    private static string WithTokenizer(Fixtures.TempDir tmp, string fixture)
    {
        string dir = Path.Combine(tmp.Path, fixture);
        Directory.CreateDirectory(dir);
        foreach (string f in Directory.GetFiles(Fixtures.Model(fixture))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        File.Copy(Path.Combine(Fixtures.BundledModel, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        return dir;
    }

    private static GgufReader Export(string modelDir, Fixtures.TempDir tmp)
    {
        string path = tmp.File(Path.GetFileName(modelDir) + ".gguf");
        GgufExport.Write(modelDir, path);
        return new GgufReader(path);
    }

    [Fact]
    public void TheBundledModelKeepsItsRopeBaseAndTokenizer()
    {
        using var tmp = new Fixtures.TempDir();
        string dir = Fixtures.BundledModel;
        var gguf = Export(dir, tmp);
        var c = ModelConfig.Load(dir);
        Assert.Equal(3u, gguf.Version);
        Assert.Equal("llama", gguf.Metadata["general.architecture"]);
        Assert.Equal(32u, gguf.Metadata["general.file_type"]); // mostly bf16
        // config.json keeps rope_theta inside rope_parameters (2,000,000 since the 32K stage): not the 10000 a
        // top-level-only reader falls back to
        Assert.Equal(2_000_000f, gguf.Metadata["llama.rope.freq_base"]);
        Assert.Equal((uint)c.NumLayers, gguf.Metadata["llama.block_count"]);
        Assert.Equal((uint)c.HiddenSize, gguf.Metadata["llama.embedding_length"]);
        Assert.Equal((uint)c.NumKvHeads, gguf.Metadata["llama.attention.head_count_kv"]);
        Assert.Equal((uint)c.MaxPositions, gguf.Metadata["llama.context_length"]);
        Assert.Equal((float)c.RmsNormEps, gguf.Metadata["llama.attention.layer_norm_rms_epsilon"]);

        var tokenizer = Tokenizer.FromDirectory(dir);
        var tokens = (object[])gguf.Metadata["tokenizer.ggml.tokens"];
        var types = (object[])gguf.Metadata["tokenizer.ggml.token_type"];
        Assert.Equal(c.VocabSize, tokens.Length);
        for (int id = 0; id < tokens.Length; id++) Assert.Equal(tokenizer.IdToToken(id), tokens[id]);
        Assert.Equal(3, types[0]); // <|endoftext|>: control
        Assert.Equal(1, types[300]);
        Assert.Equal("gpt2", gguf.Metadata["tokenizer.ggml.model"]);
        Assert.Equal("llama-bpe", gguf.Metadata["tokenizer.ggml.pre"]);
        var merges = (object[])gguf.Metadata["tokenizer.ggml.merges"];
        Assert.Equal(7934, merges.Length);
        Assert.Equal("Ġ Ġ", merges[0]);
        Assert.Equal(0u, gguf.Metadata["tokenizer.ggml.bos_token_id"]);
        Assert.Equal(0u, gguf.Metadata["tokenizer.ggml.eos_token_id"]);
        Assert.Equal(1u, gguf.Metadata["tokenizer.ggml.padding_token_id"]);
        Assert.True((bool)gguf.Metadata["tokenizer.ggml.add_bos_token"]);
        Assert.DoesNotContain(gguf.Tensors, t => t.Name == "output.weight"); // tied: llama.cpp reuses token_embd
        TensorsMatch(dir, gguf, c, permuted: true);
    }

    [Fact]
    public void AnF32LlamaWithLlama3RopeScalingCarriesItsFrequencyFactors()
    {
        using var tmp = new Fixtures.TempDir();
        string dir = WithTokenizer(tmp, "llama3-gqa");
        var c = ModelConfig.Load(dir);
        Assert.Equal(RopeType.Llama3, c.Rope.Type);
        var gguf = Export(dir, tmp);
        Assert.Equal(0u, gguf.Metadata["general.file_type"]);
        TensorsMatch(dir, gguf, c, permuted: true);
        // llama.cpp divides each base frequency by its factor: base / factor must give the scaled frequencies
        var factors = Floats(gguf.Data(gguf.Tensors.Single(t => t.Name == "rope_freqs.weight")));
        var plain = (c.Rope with { Type = RopeType.Default }).InverseFrequencies(c.HeadDim);
        var scaled = c.Rope.InverseFrequencies(c.HeadDim);
        Assert.Equal(c.HeadDim / 2, factors.Length);
        for (int i = 0; i < factors.Length; i++) Assert.Equal(scaled[i], plain[i] / factors[i], 1e-6 * scaled[i]);
        Assert.Contains(factors, f => f > 1.5f); // the fixture's scaling does rescale the low frequencies
    }

    [Fact]
    public void Qwen2KeepsItsBiasesAndHalfRotation()
    {
        using var tmp = new Fixtures.TempDir();
        string dir = WithTokenizer(tmp, "qwen2-bias-tied");
        var c = ModelConfig.Load(dir);
        var gguf = Export(dir, tmp);
        Assert.Equal("qwen2", gguf.Metadata["general.architecture"]);
        Assert.Contains(gguf.Tensors, t => t.Name == "blk.0.attn_q.bias");
        TensorsMatch(dir, gguf, c, permuted: false);
    }

    [Fact]
    public void APreTokenizerLlamaCppDoesNotKnowIsOneSentence()
    {
        using var tmp = new Fixtures.TempDir();
        string dir = WithTokenizer(tmp, "qwen2-bias-tied");
        string json = File.ReadAllText(Path.Combine(dir, "tokenizer.json"));
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json.Replace("\\\\p{N}{1,3}", "\\\\p{N}{1,2}"));
        var e = Assert.Throws<ModelFormatException>(() => GgufExport.Write(dir, tmp.File("x.gguf")));
        Assert.EndsWith("the pre-tokenizer's split pattern is not one llama.cpp knows (Llama 3's, Qwen2's or GPT-2's).", e.Message);
        Assert.False(File.Exists(tmp.File("x.gguf")));
    }

    private static float[] Floats(ReadOnlySpan<byte> bytes) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();

    /// <summary>Every checkpoint tensor is in the file under llama.cpp's name, shape reversed (ggml order), with
    /// the same values; q and k rows reordered as llama.cpp's converter does: reshape(heads, 2, d/2, cols), swap
    /// axes 1 and 2.</summary>
    private static unsafe void TensorsMatch(string dir, GgufReader gguf, ModelConfig c, bool permuted)
    {
        using var store = WeightStore.Open(dir);
        int matched = 0;
        foreach (var t in store.All())
        {
            string? name = GgufExport.TensorName(t.Name);
            if (name is null) continue;
            var g = gguf.Tensors.Single(x => x.Name == name);
            Assert.Equal(t.Shape.Reverse(), g.Dims);
            matched++;
            var data = gguf.Data(g);
            int heads = !permuted ? 0 : t.Name.Contains("q_proj") ? c.NumHeads : t.Name.Contains("k_proj") ? c.NumKvHeads : 0;
            if (t.Shape.Length == 1)
            {
                Assert.Equal(0u, g.Type);
                var expected = t.ToFloatArray();
                var got = Floats(data);
                for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[SourceIndex(i, expected.Length, heads)], got[i]);
                continue;
            }
            Assert.Equal(t.Type switch { DType.F32 => 0u, DType.F16 => 1u, _ => 30u }, g.Type);
            long rows = t.Shape[0];
            int rowBytes = (int)(t.Shape[1] * t.Type.SizeInBytes());
            for (long r = 0; r < rows; r++)
            {
                var source = new ReadOnlySpan<byte>(t.Data + SourceIndex(r, rows, heads) * rowBytes, rowBytes);
                Assert.True(source.SequenceEqual(data.Slice((int)(r * rowBytes), rowBytes)), $"{t.Name} row {r}");
            }
        }
        Assert.Equal(matched + (c.Rope.Type == RopeType.Llama3 ? 1 : 0), gguf.Tensors.Count);
    }

    /// <summary>The converter's permutation: row (head, pair j, member s) of the result is row (head, s, j) of the
    /// source, i.e. source index head·d + s·d/2 + j for result index head·d + 2j + s.</summary>
    private static long SourceIndex(long r, long rows, int heads)
    {
        if (heads == 0) return r;
        long d = rows / heads, head = r / d, j = (r % d) / 2, s = (r % d) % 2;
        return head * d + s * (d / 2) + j;
    }
}
