using System.Text.Json;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>A request whose prompt begins like a finished request's starts from a copy of that prompt's KV cache and
/// prefills only the rest (<c>--prefix-cache</c>): it reports the reused tokens in
/// usage.prompt_tokens_details.cached_tokens, and its output is exactly what a server without the cache gives, for
/// dense attention and for methods whose plan starts on the copy.</summary>
[Collection("server")]
public class PrefixCacheTests(ServerFixture fx)
{
    private static readonly string[] Questions = ["\n# first: the sum\n", "\n# second: the product of the two lists\n", "\n# third\n"];

    private static string Body(string question, string? method) =>
        $"{{\"prompt\":{JsonSerializer.Serialize(SpeculationTests.LongPrompt + question)},\"max_tokens\":12,\"temperature\":0" +
        (method is null ? "" : $",\"sparse\":{{\"method\":\"{method}\",\"budget\":\"32\"}}") + "}";

    private static int Cached(JsonElement body) =>
        body.GetProperty("usage").TryGetProperty("prompt_tokens_details", out var d) ? d.GetProperty("cached_tokens").GetInt32() : 0;

    [Theory]
    [InlineData(null)]
    [InlineData("tidal")]
    [InlineData("quest")]
    [InlineData("lfps")]
    public async Task APromptThatBeginsLikeAKeptOneReusesItsCacheAndAnswersAsWithout(string? method)
    {
        await using var plain = await SparseServer.StartAsync(fx.Model, Options(entries: 0));
        await using var cached = await SparseServer.StartAsync(fx.Model, Options(entries: 2));
        using var plainClient = new HttpClient { BaseAddress = plain.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        using var cachedClient = new HttpClient { BaseAddress = cached.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        for (int i = 0; i < Questions.Length; i++)
        {
            var (status, without) = await Http.Post(plainClient, "/v1/completions", Body(Questions[i], method));
            Assert.Equal(200, status);
            Assert.Equal(0, Cached(without));
            var (status2, with) = await Http.Post(cachedClient, "/v1/completions", Body(Questions[i], method));
            Assert.Equal(200, status2);
            Assert.Equal(Http.Text(without), Http.Text(with));
            int prompt = with.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
            // whole prefill chunks (256 tokens here) of the shared part
            if (i == 0) Assert.Equal(0, Cached(with));
            else Assert.Equal(Shared(i) / 256 * 256, Cached(with));
        }
        // the same prompt again: its whole chunks short of its last token come from the cache
        var (_, again) = await Http.Post(cachedClient, "/v1/completions", Body(Questions[2], method));
        Assert.Equal((again.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() - 1) / 256 * 256, Cached(again));
        Assert.True(Shared(1) >= 256 && Cached(again) >= 256, $"the prompts share {Shared(1)} tokens: too few to reuse a chunk");
        string metrics = await cachedClient.GetStringAsync("/metrics");
        Assert.Matches(@"sparsedecode_prompt_tokens_cached_total\{[^}]*\} [1-9]", metrics);
    }

    /// <summary>The next turn of a conversation repeats the reply it follows: a dense request's decoded tokens are kept
    /// with its prompt, so the next request reuses more than the earlier prompt, and answers as without the cache.</summary>
    [Fact]
    public async Task TheNextTurnReusesTheReplyItRepeats()
    {
        await using var plain = await SparseServer.StartAsync(fx.Model, Options(entries: 0, chunk: 16));
        await using var cached = await SparseServer.StartAsync(fx.Model, Options(entries: 2, chunk: 16));
        using var plainClient = new HttpClient { BaseAddress = plain.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        using var cachedClient = new HttpClient { BaseAddress = cached.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        string first = SpeculationTests.LongPrompt + Questions[0];
        string Turn(string prompt) => $"{{\"prompt\":{JsonSerializer.Serialize(prompt)},\"max_tokens\":40,\"temperature\":0}}";
        var (_, one) = await Http.Post(cachedClient, "/v1/completions", Turn(first));
        int firstPrompt = one.GetProperty("usage").GetProperty("prompt_tokens").GetInt32();
        string second = first + Http.Text(one) + "\n# and now the product\n";
        var (_, without) = await Http.Post(plainClient, "/v1/completions", Turn(second));
        var (_, with) = await Http.Post(cachedClient, "/v1/completions", Turn(second));
        Assert.Equal(Http.Text(without), Http.Text(with));
        Assert.True(Cached(with) > firstPrompt, $"reused {Cached(with)} tokens, not more than the first prompt's {firstPrompt}");
    }

    /// <summary>Tokens question i's prompt shares with an earlier one's.</summary>
    private int Shared(int i) => Enumerable.Range(0, i).Max(j =>
        fx.Model.Codec.Encode(SpeculationTests.LongPrompt + Questions[i], true).AsSpan().CommonPrefixLength(fx.Model.Codec.Encode(SpeculationTests.LongPrompt + Questions[j], true)));

    private static ServerOptions Options(int entries, int chunk = 256) => ServerFixture.Options() with
    {
        Scheduler = ServerFixture.Options().Scheduler with { PrefixCacheEntries = entries, PrefillChunk = chunk },
    };
}
