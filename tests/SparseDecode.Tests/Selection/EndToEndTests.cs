using System.Text;
using System.Text.Json;
using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Selection;
using Xunit.Abstractions;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Selection;

/// <summary>Every method through Transformer.Decode on a small random-weight Llama (GQA, 6 layers) written to a
/// temporary directory, so the check does not depend on fixture checkpoints.</summary>
public sealed class EndToEndTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "sparsedecode-selection-" + Guid.NewGuid().ToString("N"));
    private readonly int[] _tokens;

    public EndToEndTests(ITestOutputHelper output)
    {
        _output = output;
        Directory.CreateDirectory(_dir);
        const int hidden = 32, heads = 4, kvHeads = 2, headDim = 8, layers = 6, ffn = 48, vocab = 64;
        File.WriteAllText(Path.Combine(_dir, "config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["hidden_size"] = hidden, ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads, ["num_hidden_layers"] = layers, ["intermediate_size"] = ffn,
            ["vocab_size"] = vocab, ["max_position_embeddings"] = 1024, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0,
            ["tie_word_embeddings"] = true, ["hidden_act"] = "silu",
        }));
        var rng = new Random(31);
        var tensors = new List<(string Name, int[] Shape)> { ("model.embed_tokens.weight", [vocab, hidden]), ("model.norm.weight", [hidden]) };
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}.";
            tensors.Add((p + "input_layernorm.weight", [hidden]));
            tensors.Add((p + "post_attention_layernorm.weight", [hidden]));
            tensors.Add((p + "self_attn.q_proj.weight", [heads * headDim, hidden]));
            tensors.Add((p + "self_attn.k_proj.weight", [kvHeads * headDim, hidden]));
            tensors.Add((p + "self_attn.v_proj.weight", [kvHeads * headDim, hidden]));
            tensors.Add((p + "self_attn.o_proj.weight", [hidden, heads * headDim]));
            tensors.Add((p + "mlp.gate_proj.weight", [ffn, hidden]));
            tensors.Add((p + "mlp.up_proj.weight", [ffn, hidden]));
            tensors.Add((p + "mlp.down_proj.weight", [hidden, ffn]));
        }
        var header = new Dictionary<string, object>();
        var data = new MemoryStream();
        foreach (var (name, shape) in tensors)
        {
            int count = shape.Aggregate(1, (a, b) => a * b);
            long start = data.Length;
            bool norm = shape.Length == 1;
            // Large q/k weights make attention peaky, so sparse methods have something to find.
            float sigma = name.Contains("q_proj") || name.Contains("k_proj") ? 0.6f : 0.2f;
            for (int i = 0; i < count; i++)
                data.Write(BitConverter.GetBytes(norm ? 1f : (float)((rng.NextDouble() * 2 - 1) * sigma * 1.7)));
            header[name] = new Dictionary<string, object> { ["dtype"] = "F32", ["shape"] = shape, ["data_offsets"] = new[] { start, data.Length } };
        }
        byte[] json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        using (var f = File.Create(Path.Combine(_dir, "model.safetensors")))
        {
            f.Write(BitConverter.GetBytes((ulong)json.Length));
            f.Write(json);
            data.Position = 0;
            data.CopyTo(f);
        }
        _tokens = Enumerable.Range(0, 330).Select(_ => rng.Next(vocab)).ToArray();
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>Prefill 300 tokens, then decode the remaining 30 (teacher-forced); every step's logits.</summary>
    private List<float[]> Run(Transformer model, SpanPlanOps? selector, SparsityObserver? observer = null)
    {
        using var cache = model.CreateCache(_tokens.Length);
        var ws = new DecodeWorkspace(model, cache, selector?.Granularity ?? SelectionGranularity.QueryHead);
        model.Prefill(_tokens.AsSpan(0, 300), cache, ws.Logits);
        var logits = new List<float[]>();
        for (int i = 300; i < _tokens.Length; i++)
        {
            model.Decode(_tokens[i], cache, ws, selector, observer);
            logits.Add((float[])ws.Logits.Clone());
        }
        return logits;
    }

    [Fact]
    public void EveryMethodWithTheWholeContextAsBudgetReproducesDenseLogitsExactly()
    {
        using var model = Transformer.Load(_dir);
        var dense = Run(model, null);
        foreach (string method in SelectorSpec.Methods)
            foreach (string g in new[] { "query", "kv" })
            {
                var spec = SelectorSpec.Parse(method, "100%", new Dictionary<string, string> { ["granularity"] = g });
                var sparse = Run(model, spec.Host(model.Config));
                for (int i = 0; i < dense.Count; i++) Assert.Equal(dense[i], sparse[i]);
            }
    }

    [Fact]
    public void ObserverMeasuresEachMethodAgainstDenseAttention()
    {
        using var model = Transformer.Load(_dir);
        var reports = new Dictionary<string, SparsityReport>();
        var perLayer = new Dictionary<string, IReadOnlyList<SparsityReport>>();
        foreach (string method in SelectorSpec.Methods)
        {
            var observer = new SparsityObserver();
            Run(model, SelectorSpec.Parse(method, "32", new Dictionary<string, string>()).Host(model.Config), observer);
            reports[method] = observer.Totals();
            _output.WriteLine($"{method}: {reports[method]}");
            perLayer[method] = observer.Layers();
            Assert.Equal(30, reports[method].Steps);
            Assert.Equal(6, perLayer[method].Count);
        }
        Assert.Equal((1.0, 1.0, 0.0), (reports["dense"].MassRecall, reports["dense"].TopKRecall, reports["dense"].OutputError));
        // The oracle attends to exactly the top-32 of every head: top-k recall 1, the best mass recall of any
        // method at this budget, and every key scored.
        Assert.Equal(1.0, reports["oracle"].TopKRecall, 12);
        foreach (string m in new[] { "streaming", "quest", "tidal", "lfps" })
            Assert.True(reports["oracle"].MassRecall >= reports[m].MassRecall - 1e-12, $"{m} beat the oracle's mass recall");
        Assert.All(perLayer["oracle"], r => Assert.Equal(4 * (300 + 1 + 29 / 2.0), r.KeysScoredPerStep, 9));
        Assert.True(reports["oracle"].MassRecall < 1);
        // StreamingLLM scores nothing; Tidal scores every key in its two selection layers only (6 layers: 1 and 2).
        Assert.Equal(0, reports["streaming"].KeysScoredPerStep);
        var tidal = perLayer["tidal"];
        Assert.Equal([0, 4 * 315.5, 4 * 315.5, 0, 0, 0], tidal.Select(r => r.KeysScoredPerStep));
        Assert.Equal([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], tidal.Select(r => r.DenseShare));
        // LFPS scores fewer keys than the oracle.
        Assert.True(reports["lfps"].KeysScoredPerStep < reports["oracle"].KeysScoredPerStep);
    }
}
