using System.Net;
using System.Text.Json;
using SparseDecode.Server.Hosting;
using SparseDecode.Tests.ModelChecks;
using Xunit;
using SparseDecode.Server.Serving;

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

/// <summary>A tokenizer whose ids run past the checkpoint's embedding table (found by structural fuzzing of
/// tokenizer.json): refused per request with one sentence instead of failing inside a step.</summary>
public class TokenizerMismatchTests
{
    private sealed class WideCodec(ITextCodec inner) : ITextCodec
    {
        public int[] Encode(string text, bool addSpecialTokens) => [.. inner.Encode(text, addSpecialTokens), 1 << 20];
        public string TokenText(int id) => inner.TokenText(id);
        public ITokenTextStream CreateStream() => inner.CreateStream();
        public int? SpecialTokenId(string token) => inner.SpecialTokenId(token);
        public string? ChatTemplate => inner.ChatTemplate;
        public string? BosToken => inner.BosToken;
        public string? EosToken => inner.EosToken;
    }

    [Fact]
    public async Task IdsOutsideTheModelsVocabularyAreRefused()
    {
        using var loaded = ServedModel.Load(Fixtures.BundledModel);
        var model = new ServedModel("wide", loaded.Directory, loaded.Engine, new WideCodec(loaded.Codec));
        await using var server = await SparseServer.StartAsync(model, ServerFixture.Options());
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var (status, body) = await Http.Post(client, "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":2}");
        Http.AssertError(status, body, 500, null, "tokenizer_mismatch");
        var (chat, chatBody) = await Http.Post(client, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        Http.AssertError(chat, chatBody, 500, null, "tokenizer_mismatch");
    }
}
