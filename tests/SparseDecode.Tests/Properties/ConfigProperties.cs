using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using SparseDecode.Fuzz;
using SparseDecode.Model;

namespace SparseDecode.Tests.Properties;

/// <summary>Properties of the config.json loader: in-range values are read back exactly, and any value at all in
/// any field gives either a config within every bound or one sentence naming config.json.</summary>
public class ConfigProperties
{
    private static readonly string[] Fields =
    [
        "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers", "vocab_size",
        "intermediate_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "eos_token_id", "bos_token_id",
        "hidden_act", "sliding_window", "rope_scaling", "torch_dtype", "architectures", "tie_word_embeddings",
    ];

    private static JsonNode? J(JsonNode? n) => n;

    private static readonly Gen<JsonNode?> Nasty = Gen.OneOf(new Gen<JsonNode?>[]
    {
        Gen.Int.Select(i => J(i)), Gen.Long.Select(l => J(l)), Gen.Double.Select(d => J(double.IsFinite(d) ? d : 1e308)),
        Gen.Int[0, 6].Select(k => J(k switch { 0 => null, 1 => 0, 2 => -1, 3 => "silu", 4 => int.MaxValue, 5 => 1e-300, _ => true })),
        Gen.String.Select(s => J(s)),
        Gen.Int[-3, 300].Array[0, 3].Select(a => J(new JsonArray([.. a.Select(x => J(x))]))),
        Gen.Double[-2, 10].Select(f => J(new JsonObject { ["rope_type"] = "llama3", ["factor"] = f })),
    });

    private static JsonObject Valid(int heads, int group, int headDim, int layers, int vocab, int positions, double eps, double theta) => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["hidden_size"] = heads * headDim, ["num_attention_heads"] = heads, ["num_key_value_heads"] = heads / group,
        ["head_dim"] = headDim, ["num_hidden_layers"] = layers, ["vocab_size"] = vocab, ["intermediate_size"] = 4 * heads * headDim,
        ["max_position_embeddings"] = positions, ["rms_norm_eps"] = eps, ["rope_theta"] = theta, ["eos_token_id"] = new JsonArray(1, 2),
    };

    private static readonly Gen<(int, int, int, int, int, int, double, double)> InRange = Gen.Select(
        Gen.Int[1, 8].Select(h => h * 4), Gen.OneOf(Gen.Const(1), Gen.Const(2), Gen.Const(4)), Gen.Int[1, 64].Select(d => 2 * d),
        Gen.Int[1, ModelConfig.MaxLayers], Gen.Int[1, ModelConfig.MaxVocab], Gen.Int[1, ModelConfig.MaxPositionsLimit],
        Gen.Double[1e-12, 0.5], Gen.Double[1, 1e9]);

    [Fact]
    public void InRangeValuesAreReadBackExactly() =>
        InRange.Sample((heads, group, headDim, layers, vocab, positions, eps, theta) =>
        {
            var json = Valid(heads, group, headDim, layers, vocab, positions, eps, theta);
            var c = ModelConfig.FromJson(Encoding.UTF8.GetBytes(json.ToJsonString()), "config.json");
            Assert.Equal((heads * headDim, heads, heads / group, headDim, layers, vocab, positions, eps, theta),
                (c.HiddenSize, c.NumHeads, c.NumKvHeads, c.HeadDim, c.NumLayers, c.VocabSize, c.MaxPositions, c.RmsNormEps, c.Rope.Theta));
        }, iter: 300, threads: 1);

    [Fact]
    public void AnyNodeOfARealConfigReplacedIsAcceptedWithinBoundsOrRefused() =>
        JsonMutation.Of("config").Sample(bytes => FuzzTargets.Config(bytes), iter: 500, threads: 1);

    [Fact]
    public void AnyValueInAnyFieldIsAcceptedWithinBoundsOrRefusedNamingTheFile() =>
        Gen.Select(Gen.Int[0, Fields.Length - 1].Array[1, 4], Nasty.Array[4]).Sample((fields, values) =>
        {
            var json = Valid(8, 2, 16, 2, 100, 512, 1e-5, 10000);
            for (int i = 0; i < fields.Length; i++) json[Fields[fields[i]]] = values[i]?.DeepClone();
            var bytes = Encoding.UTF8.GetBytes(json.ToJsonString());
            FuzzTargets.Config(bytes); // throws only when an accepted config breaks a bound
            try
            {
                ModelConfig.FromJson(bytes, "dir/config.json");
            }
            catch (ModelFormatException e)
            {
                Assert.StartsWith("dir/config.json: ", e.Message);
                Assert.DoesNotContain('\n', e.Message);
            }
        }, iter: 500, threads: 1);
}
