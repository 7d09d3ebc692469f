using System.Net;
using System.Text.Json;
using SparseDecode.Server.Hosting;
using SparseDecode.Tests.ModelChecks;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>A checkpoint with a NaN weight once answered 500 from the JSON writer or cut the stream after "data: ";
/// the first step now stops the sequence with an OpenAI error object, or an error event and [DONE].</summary>
public class NonFiniteModelTests
{
    [Fact]
    public async Task NaNLogitsEndTheRequestWithAClearError()
    {
        using var tmp = new Fixtures.TempDir();
        foreach (string f in Directory.GetFiles(Fixtures.BundledModel))
            File.Copy(f, tmp.File(Path.GetFileName(f)));
        HostileCheckpointTests.Poison(tmp.File("model.safetensors"), "model.norm.weight", 0, float.NaN);
        using var model = ServedModel.Load(tmp.Path);
        await using var server = await SparseServer.StartAsync(model, ServerFixture.Options());
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };

        var (status, body) = await Http.Post(client, "/v1/completions", "{\"prompt\":\"def f(x):\",\"max_tokens\":4}");
        Http.AssertError(status, body, 500, null, "non_finite_logits");
        Assert.Contains("non-finite logits", body.GetProperty("error").GetProperty("message").GetString());

        var events = await Http.PostStream(client, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}");
        Assert.Equal("[DONE]", events[^1]);
        using var error = JsonDocument.Parse(events[^2]);
        Assert.Equal("non_finite_logits", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        using var health = await client.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }
}
