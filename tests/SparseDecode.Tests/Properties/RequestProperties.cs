using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;
using SparseDecode.Fuzz;
using SparseDecode.Server.Protocol;

namespace SparseDecode.Tests.Properties;

/// <summary>Properties of the request parser: any combination of fields and values is either accepted within
/// every range or refused with a 400 whose param names a field the body has (or a required one it lacks).</summary>
public class RequestProperties
{
    private static readonly string[] Fields =
    [
        "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream", "stream_options",
        "logprobs", "top_logprobs", "n", "best_of", "presence_penalty", "frequency_penalty", "sparse", "model", "echo", "ignore_eos",
    ];

    private static JsonNode? J(JsonNode? n) => n;

    private static readonly Gen<JsonNode?> Values = Gen.OneOf(new Gen<JsonNode?>[]
    {
        Gen.Int[-3, 5000].Select(i => J(i)), Gen.Long.Select(l => J(l)),
        Gen.Double.Where(double.IsFinite).Select(d => J(d)), Gen.Double[0, 2].Select(d => J(d)),
        Gen.String.Select(s => J(s)), Gen.Bool.Select(b => J(b)), Gen.Int[0, 1].Select(_ => J(null)),
        Gen.Int.Array[0, 5].Select(a => J(new JsonArray([.. a.Select(x => J(x))]))),
        Gen.Select(Gen.OneOf(Gen.Const("lfps"), Gen.Const("quest"), Gen.Const("nope")), Gen.OneOf(Gen.Const("3%"), Gen.Const("NaN%"), Gen.Const("256")), Gen.Int[-5, 200000])
            .Select((m, b, h) => J(new JsonObject { ["method"] = m, ["budget"] = b, ["params"] = new JsonObject { ["history"] = h } })),
        Gen.Bool.Select(b => J(new JsonObject { ["include_usage"] = b ? "yes" : true })),
    });

    private static readonly Gen<JsonNode?> Prompts = Gen.OneOf(new Gen<JsonNode?>[]
    {
        Gen.String.Select(s => J(s)), Gen.Int[-1, 70000].Array[0, 4].Select(a => J(new JsonArray([.. a.Select(x => J(x))]))),
        Gen.Int[0, 1].Select(_ => J(null)), Gen.Int.Select(i => J(i)),
    });

    [Fact]
    public void AnyBodyIsAcceptedInRangeOrRefusedNamingAField() =>
        Gen.Select(Gen.Int[0, Fields.Length - 1].Array[0, 6], Values.Array[6], Prompts, Gen.Bool).Sample((fields, values, prompt, chat) =>
        {
            var body = new JsonObject();
            if (chat) body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt?.DeepClone() });
            else body["prompt"] = prompt?.DeepClone();
            for (int i = 0; i < fields.Length; i++) body[Fields[fields[i]]] = values[i]?.DeepClone();
            var bytes = Encoding.UTF8.GetBytes(body.ToJsonString());
            FuzzTargets.Request(bytes); // throws only for an accepted request out of range, or a non-4xx refusal
            try
            {
                if (chat) RequestParser.ParseChat(bytes, 4096);
                else RequestParser.ParseCompletion(bytes, 4096);
            }
            catch (ApiException e)
            {
                Assert.Equal(400, e.Status);
                Assert.DoesNotContain('\n', e.Message);
                if (e.Param is string param)
                {
                    string top = param.Split('.', '[')[0];
                    Assert.True(body.ContainsKey(top) || top is "prompt" or "messages", $"param '{param}' names no field of the body");
                }
            }
        }, iter: 1000, threads: 1);

    [Fact]
    public void AnyNodeOfARealRequestReplacedIsAcceptedInRangeOrRefusedWith400() =>
        JsonMutation.Of("request").Sample(bytes => FuzzTargets.Request(bytes), iter: 1000, threads: 1);

    [Fact]
    public void ArbitraryBytesAreRefusedWith400() =>
        Gen.Byte.Array[0, 64].Sample(bytes =>
        {
            var e = Record.Exception(() => RequestParser.ParseCompletion(bytes, 4096));
            if (e is not null) Assert.Equal(400, Assert.IsType<ApiException>(e).Status);
        }, iter: 1000, threads: 1);
}
