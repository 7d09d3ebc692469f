using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using SparseDecode.Server.Hosting;
using SparseDecode.Tests.Cli;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>What a server exposed to untrusted clients needs: an API key, graceful shutdown, a burst bounded by
/// batch + queue, fair admission between clients, honest metrics, and a clear message for a busy port. Each test
/// runs its own small server over the shared loaded model.</summary>
[Collection("server")]
public class ExposureTests(ServerFixture fx)
{
    private const string Long = "{\"prompt\":\"while True:\\n\",\"max_tokens\":7000,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}";

    /// <param name="closeOnDispose">A disposed unfinished response closes its connection at once, instead of the
    /// client draining it (up to 1 MB, 2 s) for reuse: a drain can read a cancelled stream to its end, which the
    /// server then rightly counts as a 200.</param>
    private async Task<(SparseServer Server, HttpClient Client)> Start(Func<ServerOptions, ServerOptions> edit, bool closeOnDispose = false)
    {
        var server = await SparseServer.StartAsync(fx.Model, edit(ServerFixture.Options() with { MaxTokensLimit = 8000 }));
        var handler = closeOnDispose ? new SocketsHttpHandler { MaxResponseDrainSize = 0 } : new SocketsHttpHandler();
        return (server, new HttpClient(handler) { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) });
    }

    private static Task<HttpResponseMessage> Send(HttpClient client, string body, CancellationToken cancel = default, string? key = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Http.Json(body) };
        if (key is not null) request.Headers.Authorization = new("Bearer", key);
        return client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
    }

    private static async Task<List<string>> Events(HttpResponseMessage response)
    {
        var events = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is string line)
            if (line.StartsWith("data: ", StringComparison.Ordinal)) events.Add(line["data: ".Length..]);
        return events;
    }

    [Fact]
    public async Task ApiKeyGuardsTheV1RoutesOnly()
    {
        var (server, client) = await Start(o => o with { ApiKey = "s3cret" });
        await using var _ = server;
        using var __ = client;
        const string body = "{\"prompt\":\"x = \",\"max_tokens\":2,\"temperature\":0}";
        foreach (string? key in new[] { null, "wrong", "s3cre", "s3cret2" })
        {
            using var refused = await Send(client, body, key: key);
            using var doc = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
            Http.AssertError((int)refused.StatusCode, doc.RootElement, 401, null, "invalid_api_key");
            Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
        }
        using (var models = await client.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
        using (var ok = await Send(client, body, key: "s3cret")) Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        using (var health = await client.GetAsync("/health")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using (var metrics = await client.GetAsync("/metrics")) Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
    }

    /// <summary>SIGTERM once let streams decode on for ~30 s and then reset them with no error event or [DONE].</summary>
    [Fact]
    public async Task ShutdownDrainsThenEndsStreamsWithAnErrorEventAndWaitingRequestsWith503()
    {
        var drain = TimeSpan.FromSeconds(2);
        var (server, client) = await Start(o => o with { DrainTimeout = drain, Scheduler = o.Scheduler with { MaxBatch = 2, MaxQueue = 4 } });
        using var _ = client;
        using var endless = await Send(client, Long);
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 1);
        using var second = await Send(client, Long);
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 2);
        var waiting = client.PostAsync("/v1/completions", Http.Json("{\"prompt\":\"x\",\"max_tokens\":5,\"temperature\":0}"));
        await Http.WaitFor(client, m => m["sparsedecode_queue_depth"] == 1);

        var watch = Stopwatch.StartNew();
        server.RequestShutdown();
        var stopped = server.WaitForShutdownAsync();
        var (a, b) = (await Events(endless), await Events(second));
        using var queued = await waiting;
        await stopped;
        await server.DisposeAsync();
        Assert.InRange(watch.Elapsed.TotalSeconds, drain.TotalSeconds - 0.5, drain.TotalSeconds + 4);
        foreach (var events in new[] { a, b })
        {
            Assert.Equal("[DONE]", events[^1]);
            using var error = JsonDocument.Parse(events[^2]);
            Assert.Equal("shutting_down", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        }
        Assert.Equal(HttpStatusCode.ServiceUnavailable, queued.StatusCode);
        Assert.Contains("shutting_down", await queued.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task RequestsInFlightFinishWithinTheDrain()
    {
        var (server, client) = await Start(o => o with { DrainTimeout = TimeSpan.FromSeconds(20) });
        using var _ = client;
        using var stream = await Send(client, "{\"prompt\":\"def f(x):\",\"max_tokens\":24,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}");
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 1);
        var watch = Stopwatch.StartNew();
        server.RequestShutdown();
        var events = await Events(stream);
        await server.WaitForShutdownAsync();
        await server.DisposeAsync();
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"Shutdown took {watch.Elapsed} although nothing was left.");
        Assert.Equal("[DONE]", events[^1]);
        using var last = JsonDocument.Parse(events[^2]);
        Assert.Equal("length", last.RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    /// <summary>A burst once got 64 places (the queue) instead of batch + queue.</summary>
    [Fact]
    public async Task ABurstGetsExactlyBatchPlusQueuePlaces()
    {
        var (server, client) = await Start(o => o with { Scheduler = o.Scheduler with { MaxBatch = 2, MaxQueue = 3 } });
        await using var _ = server;
        using var __ = client;
        using var cts = new CancellationTokenSource();
        var responses = await Task.WhenAll(Enumerable.Range(0, 9).Select(_ => Send(client, Long, cts.Token)));
        try
        {
            // a stream that ended while the burst was still arriving (on a loaded machine its unread events can end it)
            // gave its place to a later request; none ends in the usual run, and then the places are exactly 5
            var m = await Http.Metrics(client);
            int ended = (int)m.Where(kv => kv.Key.StartsWith("sparsedecode_requests_total{", StringComparison.Ordinal)
                && kv.Key.Contains("completions", StringComparison.Ordinal) && !kv.Key.Contains("status=\"429\"", StringComparison.Ordinal)).Sum(kv => kv.Value);
            int ok = responses.Count(r => r.StatusCode == HttpStatusCode.OK);
            Assert.InRange(ok, 5, 5 + ended);
            Assert.Equal(9 - ok, responses.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));
        }
        finally
        {
            cts.Cancel();
            foreach (var r in responses) r.Dispose();
        }
        await Http.WaitIdle(client, TimeSpan.FromSeconds(10));
    }

    /// <summary>Aborted streams were counted as status 200 and queued cancellations not at all.</summary>
    [Fact]
    public async Task MetricsCountAbortedStreamsAndQueuedCancellations()
    {
        var (server, client) = await Start(o => o with { Scheduler = o.Scheduler with { MaxBatch = 1, MaxQueue = 2 } }, closeOnDispose: true);
        await using var _ = server;
        using var __ = client;
        using var active = new CancellationTokenSource();
        using var queued = new CancellationTokenSource();
        var first = await Send(client, Long, active.Token);
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 1);
        var second = await Send(client, Long, queued.Token);
        await Http.WaitFor(client, m => m["sparsedecode_queue_depth"] == 1);
        queued.Cancel();
        second.Dispose();
        await Http.WaitFor(client, m => m["sparsedecode_queue_depth"] == 0 && m["sparsedecode_requests_cancelled_total"] == 1);
        active.Cancel();
        first.Dispose();
        var m = await Http.WaitIdle(client, TimeSpan.FromSeconds(10));
        await Http.WaitFor(client, m => m.GetValueOrDefault(Key(499)) == 2);
        m = await Http.Metrics(client);
        Assert.Equal(2, m["sparsedecode_requests_cancelled_total"]);
        Assert.Equal(0, m.GetValueOrDefault(Key(200)));
        static string Key(int status) => $"sparsedecode_requests_total{{model=\"sparse-code-16m\",endpoint=\"completions\",status=\"{status}\"}}";
    }

    /// <summary>An HTTP client whose connections come from another loopback address (all of 127.0.0.0/8 is loopback).</summary>
    private static HttpClient OtherClient(Uri baseAddress) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (context, cancel) =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
            await socket.ConnectAsync(context.DnsEndPoint, cancel);
            return new NetworkStream(socket, ownsSocket: true);
        },
    }) { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };

    private const string Short = "{\"prompt\":\"x = \",\"max_tokens\":3,\"temperature\":0}";

    /// <summary>16 long requests of one client once held every slot while others waited minutes: with the cap, one
    /// client's further requests wait while a slot stays free for the others.</summary>
    [Fact]
    public async Task OneClientCannotHoldEverySlot()
    {
        var (server, client) = await Start(o => o with { Scheduler = o.Scheduler with { MaxBatch = 3, MaxQueue = 8, MaxActivePerClient = 2 } });
        await using var _ = server;
        using var __ = client;
        using var other = OtherClient(server.BaseAddress);
        using var cts = new CancellationTokenSource();
        var mine = new List<HttpResponseMessage>();
        for (int i = 0; i < 4; i++) mine.Add(await Send(client, Long, cts.Token));
        // Two decode (the cap), two wait although a slot is free.
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 2 && m["sparsedecode_queue_depth"] == 2);
        var (status, _) = await Http.Post(other, "/v1/completions", Short);
        Assert.Equal(200, status);
        // Still capped once the other client's slot is free again.
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 2 && m["sparsedecode_queue_depth"] == 2);
        // Nor can it fill the queue: half of it (4) is its share, and the other client still gets in line.
        for (int i = 0; i < 2; i++) mine.Add(await Send(client, Long, cts.Token));
        using (var refused = await Send(client, Long, cts.Token))
        {
            using var doc = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
            Http.AssertError((int)refused.StatusCode, doc.RootElement, 429, null, "client_queue_full");
        }
        var (otherStatus, _) = await Http.Post(other, "/v1/completions", Short);
        Assert.Equal(200, otherStatus);
        cts.Cancel();
        foreach (var r in mine) r.Dispose();
        await Http.WaitIdle(client, TimeSpan.FromSeconds(10));
    }

    /// <summary>Without a cap, a freed slot goes to the waiting client with the fewest sequences decoding, ahead of
    /// an earlier request of a client that already decodes.</summary>
    [Fact]
    public async Task FreedSlotsGoToTheClientWithTheFewestSequencesFirst()
    {
        var (server, client) = await Start(o => o with { Scheduler = o.Scheduler with { MaxBatch = 2, MaxQueue = 8 } });
        await using var _ = server;
        using var __ = client;
        using var other = OtherClient(server.BaseAddress);
        using var first = new CancellationTokenSource();
        using var rest = new CancellationTokenSource();
        var freed = await Send(client, Long, first.Token);
        var mine = new List<HttpResponseMessage> { await Send(client, Long, rest.Token), await Send(client, Long, rest.Token) };
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 2 && m["sparsedecode_queue_depth"] == 1);
        var theirs = Http.Post(other, "/v1/completions", Short);
        await Http.WaitFor(client, m => m["sparsedecode_queue_depth"] == 2);
        first.Cancel();
        freed.Dispose();
        // First come, first served would give the slot to the busy client's 7000-token request, and theirs would wait
        // for one of those to end (tens of seconds); fairly admitted, three tokens take well under a second.
        Assert.Equal(200, (await theirs.WaitAsync(TimeSpan.FromSeconds(10))).Status);
        rest.Cancel();
        foreach (var r in mine) r.Dispose();
        await Http.WaitIdle(client, TimeSpan.FromSeconds(10));
    }

    /// <summary>A busy port once printed an 18-line stack trace.</summary>
    [Fact]
    public async Task ABusyPortIsOneSentence()
    {
        int port = fx.Server.BaseAddress.Port;
        var e = await Assert.ThrowsAsync<IOException>(() => SparseServer.StartAsync(fx.Model, ServerFixture.Options() with { Port = port }));
        Assert.Equal($"Cannot listen on 127.0.0.1:{port}: it is already in use.", e.Message);
    }
}

/// <summary>The same through the command line: one line on stderr and exit code 1.</summary>
[Collection("console")]
public class BusyPortCommandTests
{
    [Fact]
    public void ABusyPortIsOneErrorLine()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var (code, _, stderr) = CliTests.Run("serve", "--model", Fixtures.BundledModel, "--port", port.ToString(), "--quiet");
        Assert.Equal(1, code);
        Assert.Equal($"error: Cannot listen on 127.0.0.1:{port}: it is already in use.", stderr.Trim());
    }
}
