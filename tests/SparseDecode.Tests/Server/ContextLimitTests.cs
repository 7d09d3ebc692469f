using System.Text.Json;
using SparseDecode.Server.Hosting;
using Xunit;
using SparseDecode.Server.Serving;

namespace SparseDecode.Tests.Server;

/// <summary>`serve --context N` holds on every backend: /v1/models reports N and longer requests are refused.</summary>
[Collection("server")]
public class ContextLimitTests(ServerFixture fx)
{
    [Fact]
    public async Task ASmallerContextIsReportedAndEnforced()
    {
        var small = new ServedModel("small", fx.Model.Directory, fx.Model.Engine, fx.Model.Codec, context: 512);
        await using var server = await SparseServer.StartAsync(small, ServerFixture.Options());
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };

        using (var models = JsonDocument.Parse(await client.GetStringAsync("/v1/models")))
            Assert.Equal(512, models.RootElement.GetProperty("data")[0].GetProperty("max_model_len").GetInt32());

        string prompt = string.Concat(Enumerable.Repeat("def f(x):\n    return x + 1\n", 100));
        int tokens = fx.Model.Codec.Encode(prompt, addSpecialTokens: true).Length;
        Assert.InRange(tokens, 513, 32768);
        var (status, body) = await Http.Post(client, "/v1/completions", JsonSerializer.Serialize(new { prompt, max_tokens = 1 }));
        Http.AssertError(status, body, 400, "prompt", "context_length_exceeded");
        Assert.StartsWith($"This model's maximum context length is 512 tokens. However, your prompt has {tokens} tokens",
            body.GetProperty("error").GetProperty("message").GetString());
        var (echo, echoBody) = await Http.Post(client, "/v1/completions", JsonSerializer.Serialize(new { prompt, max_tokens = 0, echo = true }));
        Http.AssertError(echo, echoBody, 400, "prompt", "context_length_exceeded");

        var (ok, _) = await Http.Post(client, "/v1/completions", "{\"prompt\":\"x = \",\"max_tokens\":2}");
        Assert.Equal(200, ok);
    }
}
