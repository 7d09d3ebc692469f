using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using SparseDecode.Server.Hosting;
using SparseDecode.Tokenization;
using Xunit;
using SparseDecode.Server.Serving;

namespace SparseDecode.Tests.Server;

/// <summary>A tokenizer pattern that is legal and slow on every match (no single match times out): each request's
/// tokenization is bounded, refused with 400 past the limit, and /health answers while such requests run.</summary>
[Collection("server")]
public class SlowTokenizerTests(ServerFixture fx)
{
    [Fact]
    public async Task SlowTokenizationIsRefusedAndHealthKeepsAnswering()
    {
        using var files = new Fixtures.TempDir();
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.BundledModel, "tokenizer.json")))!;
        // Every match looks ahead to the end of the text: quadratic in its length, a few microseconds per match.
        json["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"] = new JsonObject { ["Regex"] = "[\\s\\S](?=(?:ab|[\\s\\S])*$)" };
        File.WriteAllText(files.File("tokenizer.json"), json.ToJsonString());
        var slow = new ServedModel("slow", fx.Model.Directory, fx.Model.Engine, new TokenizerCodec(Tokenizer.FromFile(files.File("tokenizer.json"))));
        var options = ServerFixture.Options() with { TokenizeTimeLimit = TimeSpan.FromSeconds(0.25) };
        await using var server = await SparseServer.StartAsync(slow, options);
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };

        string body = JsonSerializer.Serialize(new { prompt = new string('a', 100_000), max_tokens = 1 });
        var requests = Enumerable.Range(0, 6).Select(_ => Http.Post(client, "/v1/completions", body)).ToArray();
        using (var health = await client.GetAsync("/health"))
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        foreach (var (status, error) in await Task.WhenAll(requests))
        {
            Http.AssertError(status, error, 400, null, "tokenization_timeout");
            Assert.Equal("Tokenizing a text of 100000 characters took more than the limit of 0.25 s (the tokenizer's patterns are slow on it); the text was refused.",
                error.GetProperty("error").GetProperty("message").GetString());
        }

        // A short text still tokenizes within the limit.
        var (ok, _) = await Http.Post(client, "/v1/completions", "{\"prompt\":\"x = \",\"max_tokens\":1}");
        Assert.Equal(200, ok);
    }
}
