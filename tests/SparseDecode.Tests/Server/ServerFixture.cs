using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;
using Xunit;
using SparseDecode.Server.Serving;

namespace SparseDecode.Tests.Server;

/// <summary>One real Kestrel server on a free loopback port, serving the bundled model, shared by the server tests
/// (loading the model once). The batch holds 8 sequences, so 32 concurrent requests also exercise the queue.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public ServedModel Model { get; private set; } = null!;
    public SparseServer Server { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;

    public static ServerOptions Options(int maxBatch = 8, int maxQueue = 64) => new()
    {
        Host = "127.0.0.1",
        Port = 0,
        MaxBodyBytes = 256 * 1024,
        MaxTokensLimit = 2048,
        // The tests assert on what clients receive; the log lines of the refusals and failures they provoke on
        // purpose (NaN logits, stalled streams, slow tokenizers) would only fill the test output.
        LogLevel = LogLevel.None,
        // The tests read their streams at their own pace, some only once a request has ended; the guard against
        // clients that stop reading (MaxUnreadEvents, 256 by default) has its own test and would otherwise end their
        // streams whenever decoding outruns them (client_not_reading).
        Scheduler = new SchedulerOptions { MaxBatch = maxBatch, MaxQueue = maxQueue, PrefillChunk = 256, MaxUnreadEvents = 1 << 20 },
    };

    public async Task InitializeAsync()
    {
        Model = ServedModel.Load(Fixtures.BundledModel);
        Server = await SparseServer.StartAsync(Model, Options());
        Client = new HttpClient { BaseAddress = Server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        Model.Dispose();
    }
}

[CollectionDefinition("server")]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>;

/// <summary>HTTP helpers: JSON posts, server-sent-event reading, metric scraping.</summary>
internal static class Http
{
    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>The text of a non-streamed completion's first choice.</summary>
    public static string Text(JsonElement body) => body.GetProperty("choices")[0].GetProperty("text").GetString()!;

    public static async Task<(int Status, JsonElement Body)> Post(HttpClient client, string path, string json)
    {
        using var response = await client.PostAsync(path, Json(json));
        string text = await response.Content.ReadAsStringAsync();
        using var doc = JsonDocument.Parse(text);
        return ((int)response.StatusCode, doc.RootElement.Clone());
    }

    /// <summary>The data payloads of a server-sent-event response, [DONE] included, in order.</summary>
    public static async Task<List<string>> PostStream(HttpClient client, string path, string json)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = Json(json) };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is string line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            events.Add(line["data: ".Length..]);
        }
        return events;
    }

    /// <summary>A streamed completion put back together: its text, finish reason and usage chunk (if asked for).
    /// Checks the stream's shape: [DONE] last, no error event, nothing after the finishing chunk but usage.</summary>
    public static (string Text, string? Finish, JsonElement? Usage) ReassembleCompletion(List<string> events)
    {
        Assert.Equal("[DONE]", events[^1]);
        var text = new StringBuilder();
        string? finish = null;
        JsonElement? usage = null;
        foreach (string e in events[..^1])
        {
            using var doc = JsonDocument.Parse(e);
            var root = doc.RootElement;
            Assert.Equal("text_completion", root.GetProperty("object").GetString());
            if (root.TryGetProperty("usage", out var u)) { usage = u.Clone(); Assert.Empty(root.GetProperty("choices").EnumerateArray()); continue; }
            var choice = root.GetProperty("choices")[0];
            Assert.Null(finish);
            text.Append(choice.GetProperty("text").GetString());
            if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = choice.GetProperty("finish_reason").GetString();
        }
        return (text.ToString(), finish, usage);
    }

    public static async Task<Dictionary<string, double>> Metrics(HttpClient client)
    {
        string text = await client.GetStringAsync("/metrics");
        var result = new Dictionary<string, double>();
        foreach (string line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            int space = line.LastIndexOf(' ');
            string key = line[..space];
            int brace = key.IndexOf('{');
            string name = brace < 0 ? key : key[..brace];
            // Requests are keyed with their endpoint and status; everything else by name alone.
            if (name == "sparsedecode_requests_total") name = key;
            string value = line[(space + 1)..];
            result[name] = value == "+Inf" ? double.PositiveInfinity : double.Parse(value, System.Globalization.CultureInfo.InvariantCulture);
        }
        return result;
    }

    /// <summary>Polls /metrics until the scheduler is idle (nothing active or queued, no KV cache held).</summary>
    public static async Task<Dictionary<string, double>> WaitIdle(HttpClient client, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var m = await Metrics(client);
            if (m["sparsedecode_active_sequences"] == 0 && m["sparsedecode_queue_depth"] == 0 && m["sparsedecode_kv_cache_bytes"] == 0)
                return m;
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"The server did not return to idle: active {m["sparsedecode_active_sequences"]}, queued {m["sparsedecode_queue_depth"]}, KV bytes {m["sparsedecode_kv_cache_bytes"]}.");
            await Task.Delay(20);
        }
    }

    /// <summary>Polls /metrics until `condition` holds (60 s at most).</summary>
    public static async Task WaitFor(HttpClient client, Func<Dictionary<string, double>, bool> condition)
    {
        // generous: under a loaded machine the state comes late, and only a failing run waits this long
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!condition(await Metrics(client)))
        {
            if (DateTime.UtcNow > deadline) Assert.Fail("The server did not reach the expected state.");
            await Task.Delay(10);
        }
    }

    public static void AssertError(int status, JsonElement body, int expectedStatus, string? param = null, string? code = null)
    {
        Assert.Equal(expectedStatus, status);
        var error = body.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        Assert.True(error.TryGetProperty("param", out var p));
        Assert.True(error.TryGetProperty("code", out var c));
        if (param is not null) Assert.Equal(param, p.GetString());
        if (code is not null) Assert.Equal(code, c.GetString());
    }

    public static MediaTypeHeaderValue JsonType => new("application/json");
}
