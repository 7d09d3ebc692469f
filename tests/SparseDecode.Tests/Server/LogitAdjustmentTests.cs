using System.Text;
using System.Text.Json;
using SparseDecode.Engine;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>OpenAI's presence_penalty, frequency_penalty and logit_bias are applied, not ignored: the served text is
/// the engine's own decoding with the same sampling options, and what cannot be honoured is refused.</summary>
[Collection("server")]
public class LogitAdjustmentTests(ServerFixture fx)
{
    private const string Prompt = "def fibonacci(n):\n";

    private static string Body(string extra, int maxTokens = 24) =>
        $"{{\"prompt\":{JsonSerializer.Serialize(Prompt)},\"max_tokens\":{maxTokens},\"ignore_eos\":true{extra}}}";

    /// <summary>The engine's decoding of the prompt with `sampling`, as text.</summary>
    private string Reference(SamplingOptions sampling, int maxTokens = 24)
    {
        int[] ids = fx.Model.Codec.Encode(Prompt, addSpecialTokens: true);
        var result = new Generator(fx.Model.Engine).Generate(ids, new GenerationOptions { MaxTokens = maxTokens, Sampling = sampling });
        var text = new StringBuilder();
        var stream = fx.Model.Codec.CreateStream();
        foreach (int t in result.Tokens) text.Append(stream.Push(t));
        return text.Append(stream.Flush()).ToString();
    }

    [Theory]
    [InlineData(0f, 1.5f, 0f)]
    [InlineData(1.2f, 0f, 0f)]
    [InlineData(0.4f, 0.6f, 0.9f)]
    [InlineData(-2f, 0f, 1f)]
    public async Task PenaltiesGiveTheEnginesOwnPenalisedDecoding(float presence, float frequency, float temperature)
    {
        string extra = $",\"temperature\":{temperature},\"seed\":7,\"presence_penalty\":{presence},\"frequency_penalty\":{frequency}";
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(extra));
        Assert.Equal(200, status);
        string expected = Reference(new SamplingOptions(temperature, Seed: 7, PresencePenalty: presence, FrequencyPenalty: frequency));
        Assert.Equal(expected, Http.Text(body));
        Assert.NotEqual(Reference(new SamplingOptions(temperature, Seed: 7)), expected);
    }

    [Fact]
    public async Task ALogitBiasSteersEveryToken()
    {
        int token = fx.Model.Codec.Encode(" banana", addSpecialTokens: false)[0];
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body($",\"temperature\":0,\"logit_bias\":{{\"{token}\":100}}", 6));
        Assert.Equal(200, status);
        Assert.Equal(string.Concat(Enumerable.Repeat(fx.Model.Codec.TokenText(token), 6)), Http.Text(body));

        // banning the greedy continuation's first token changes it
        string plain = Reference(SamplingOptions.Greedy, 4);
        int first = fx.Model.Codec.Encode(Prompt + plain, addSpecialTokens: true)[fx.Model.Codec.Encode(Prompt, addSpecialTokens: true).Length];
        var banned = new Dictionary<int, float> { [first] = -100 };
        (status, body) = await Http.Post(fx.Client, "/v1/completions", Body($",\"temperature\":0,\"logit_bias\":{{\"{first}\":-100}}", 4));
        Assert.Equal(200, status);
        Assert.Equal(Reference(new SamplingOptions(LogitBias: banned), 4), Http.Text(body));
        Assert.NotEqual(plain, Http.Text(body));
    }

    [Theory]
    [InlineData("\"logit_bias\":[1]", "logit_bias")]
    [InlineData("\"logit_bias\":{\"abc\":1}", "logit_bias")]
    [InlineData("\"logit_bias\":{\"-3\":1}", "logit_bias")]
    [InlineData("\"logit_bias\":{\"5\":101}", "logit_bias")]
    [InlineData("\"logit_bias\":{\"5\":\"1\"}", "logit_bias")]
    [InlineData("\"logit_bias\":{\"99999999\":1}", "logit_bias")]
    [InlineData("\"frequency_penalty\":2.5", "frequency_penalty")]
    [InlineData("\"presence_penalty\":1,\"sparse\":{\"method\":\"quest\",\"budget\":\"16\",\"speculate\":2}", "sparse.speculate")]
    public async Task WhatCannotBeHonouredIsRefused(string field, string param)
    {
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body("," + field, 2));
        Assert.Equal(400, status);
        Assert.Equal(param, body.GetProperty("error").GetProperty("param").GetString());
    }
}
