using System.Text.Json;
using SparseDecode.Server.Hosting;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>Continuous batching under load: concurrent requests all finish with the single-request result, a
/// client that disconnects mid-stream frees its slot and KV cache, and a full queue answers 429.</summary>
[Collection("server")]
public class ConcurrencyTests(ServerFixture fx)
{
    private static readonly string[] Prompts = ["def add(a, b):\n", "import os\n", "class Point:\n", "for i in range(10):\n"];

    private static string Body(string prompt, int maxTokens, string extra = "") =>
        $"{{\"prompt\":{JsonSerializer.Serialize(prompt)},\"max_tokens\":{maxTokens},\"temperature\":0{extra}}}";

    [Fact]
    public async Task ThirtyTwoConcurrentRequestsAllMatchTheSingleRequestResult()
    {
        const int maxTokens = 6;
        var expected = new Dictionary<string, string>();
        foreach (string p in Prompts)
        {
            var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(p, maxTokens));
            Assert.Equal(200, status);
            expected[p] = body.GetProperty("choices")[0].GetProperty("text").GetString()!;
            Assert.Equal(CompletionTests.Reference(fx, p, maxTokens, out _, out _), expected[p]);
        }

        // Half of them stream, so batches mix both kinds; 32 > the batch of 8, so requests queue and join mid-flight.
        var tasks = Enumerable.Range(0, 32).Select(async i =>
        {
            string p = Prompts[i % Prompts.Length];
            if (i % 2 == 0)
            {
                var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(p, maxTokens));
                Assert.Equal(200, status);
                return (p, body.GetProperty("choices")[0].GetProperty("text").GetString()!);
            }
            var events = await Http.PostStream(fx.Client, "/v1/completions", Body(p, maxTokens, ",\"stream\":true"));
            Assert.Equal("[DONE]", events[^1]);
            string text = string.Concat(events[..^1].Select(e =>
            {
                using var doc = JsonDocument.Parse(e);
                return doc.RootElement.GetProperty("choices")[0].GetProperty("text").GetString();
            }));
            return (p, text);
        }).ToArray();
        var results = await Task.WhenAll(tasks);
        foreach (var (p, text) in results) Assert.Equal(expected[p], text);
        await Http.WaitIdle(fx.Client, TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task DisconnectMidStreamFreesTheSlotAndTheKvCache()
    {
        var before = await Http.WaitIdle(fx.Client, TimeSpan.FromSeconds(10));
        using var cts = new CancellationTokenSource();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
               { Content = Http.Json(Body("while True:\n", 2000, ",\"stream\":true,\"ignore_eos\":true")) })
        using (var response = await fx.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token))
        {
            Assert.Equal(200, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
            var chunks = new List<string>();
            while (chunks.Count < 3 && await reader.ReadLineAsync(cts.Token) is string line)
                if (line.StartsWith("data: ", StringComparison.Ordinal)) chunks.Add(line);
            Assert.Equal(3, chunks.Count);
            var during = await Http.Metrics(fx.Client);
            // the events so far say why, should the sequence not be decoding any more
            Assert.True(during["sparsedecode_active_sequences"] == 1,
                $"{during["sparsedecode_active_sequences"]} sequences decoding after the events {string.Join(" | ", chunks)}");
            Assert.True(during["sparsedecode_kv_cache_bytes"] > 0);
            cts.Cancel(); // the client goes away with about 2000 tokens still to generate
        }
        var after = await Http.WaitIdle(fx.Client, TimeSpan.FromSeconds(10));
        Assert.Equal(before["sparsedecode_requests_cancelled_total"] + 1, after["sparsedecode_requests_cancelled_total"]);
        Assert.True(after["sparsedecode_generation_tokens_total"] - before["sparsedecode_generation_tokens_total"] < 2000);

        // The freed slot serves the next request.
        var (status, _) = await Http.Post(fx.Client, "/v1/completions", Body("x = ", 2));
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task FullQueueAnswers429WithAnErrorObject()
    {
        // A server of its own with one batch slot and one queue place, sharing the loaded model.
        await using var server = await SparseServer.StartAsync(fx.Model, ServerFixture.Options(maxBatch: 1, maxQueue: 1));
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        string longBody = Body("while True:\n", 2000, ",\"stream\":true,\"ignore_eos\":true");
        using var cts = new CancellationTokenSource();
        var first = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Http.Json(longBody) },
            HttpCompletionOption.ResponseHeadersRead, cts.Token);
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 1);
        var second = client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Http.Json(longBody) },
            HttpCompletionOption.ResponseHeadersRead, cts.Token);
        await Http.WaitFor(client, m => m["sparsedecode_queue_depth"] == 1);

        var (status, body) = await Http.Post(client, "/v1/completions", Body("x = ", 2));
        Http.AssertError(status, body, 429, null, "queue_full");
        var (chatStatus, chatBody) = await Http.Post(client, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        Http.AssertError(chatStatus, chatBody, 429, null, "queue_full");

        cts.Cancel();
        first.Dispose();
        try { (await second).Dispose(); } catch (OperationCanceledException) { }
        await Http.WaitIdle(client, TimeSpan.FromSeconds(10));
        var (okStatus, _) = await Http.Post(client, "/v1/completions", Body("x = ", 2));
        Assert.Equal(200, okStatus);
    }
}
