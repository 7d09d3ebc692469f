using System.Text.Json;
using SparseDecode.Engine;

namespace SparseDecode.Tests.Server;

/// <summary>/v1/completions with echo, logprobs and max_tokens 0, as lm-evaluation-harness scores log-likelihoods:
/// the prompt back with log p(token | tokens before it) per token, equal to the engine's Scorer.</summary>
[Collection("server")]
public class EchoScoringTests(ServerFixture fx)
{
    private const string Prompt = "def fibonacci(n):\n    return";

    [Fact]
    public async Task EchoWithZeroMaxTokensScoresThePrompt()
    {
        var (status, body) = await Http.Post(fx.Client, "/v1/completions",
            $$"""{"prompt":{{JsonSerializer.Serialize(Prompt)}},"max_tokens":0,"echo":true,"logprobs":1,"temperature":0}""");
        Assert.Equal(200, status);
        var choice = body.GetProperty("choices")[0];
        Assert.EndsWith(Prompt, choice.GetProperty("text").GetString());
        var lp = choice.GetProperty("logprobs");
        int[] ids = fx.Model.Codec.Encode(Prompt, addSpecialTokens: true);
        double[] expected = Scorer.TokenLogprobs(fx.Model.Engine, ids);
        var got = lp.GetProperty("token_logprobs");
        Assert.Equal(ids.Length, got.GetArrayLength());
        Assert.Equal(ids.Length, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(0, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(JsonValueKind.Null, got[0].ValueKind); // the first token has no context
        for (int i = 1; i < ids.Length; i++)
        {
            Assert.Equal(expected[i - 1], got[i].GetDouble(), 4);
            var top = lp.GetProperty("top_logprobs")[i].EnumerateObject().Single();
            Assert.True(top.Value.GetDouble() >= got[i].GetDouble() - 1e-9, "the top alternative is at least as likely");
        }
        var offsets = lp.GetProperty("text_offset").EnumerateArray().Select(e => e.GetInt32()).ToList();
        Assert.Equal(offsets.Order(), offsets);
    }

    [Fact]
    public async Task TokenIdPromptsAreScoredToo()
    {
        int[] ids = fx.Model.Codec.Encode(Prompt, addSpecialTokens: true);
        var (status, body) = await Http.Post(fx.Client, "/v1/completions",
            $$"""{"prompt":[{{string.Join(",", ids)}}],"max_tokens":0,"echo":true,"logprobs":0}""");
        Assert.Equal(200, status);
        double sum = body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Skip(1).Sum(e => e.GetDouble());
        Assert.Equal(Scorer.TokenLogprobs(fx.Model.Engine, ids).Sum(), sum, 3);
    }

    [Theory]
    [InlineData("""{"prompt":"a","max_tokens":0}""", "max_tokens")]
    [InlineData("""{"prompt":"a","max_tokens":5,"echo":true}""", "echo")]
    [InlineData("""{"prompt":"a","echo":true}""", "echo")]
    [InlineData("""{"prompt":"a","max_tokens":0,"echo":true,"stream":true}""", "stream")]
    public async Task WhatEchoDoesNotCoverIsA400NamingTheField(string json, string param)
    {
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", json);
        Assert.Equal(400, status);
        Assert.Equal(param, body.GetProperty("error").GetProperty("param").GetString());
    }
}
