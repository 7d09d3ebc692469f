using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Protocol;
using SparseDecode.Server.Scheduling;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>A client that stops reading its stream holds a bounded amount and loses its batch place: its unread
/// events are capped, and a write it does not accept closes the connection.</summary>
[Collection("server")]
public class BackPressureTests(ServerFixture fx)
{
    [Fact]
    public async Task UnreadEventsPastTheLimitEndTheGeneration()
    {
        using var scheduler = new BatchScheduler(fx.Model, new SchedulerOptions { MaxBatch = 2, MaxUnreadEvents = 8 }, new ServerMetrics());
        int[] prompt = fx.Model.Codec.Encode("while True:\n", addSpecialTokens: true);
        var seq = scheduler.Submit(new SequenceRequest { Prompt = prompt, MaxTokens = 500, IgnoreEos = true });

        // Nobody reads: the ninth event is the error that ends the sequence, and the batch place is given back.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (scheduler.Outstanding > 0 && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.Equal(0, scheduler.Outstanding);
        Assert.Equal(0, scheduler.ActiveCount);
        Assert.Equal(0, scheduler.KvCacheBytes);
        var events = new List<SequenceEvent>();
        while (seq.Events.TryRead(out var e)) events.Add(e);
        Assert.True(events.Count == 9, string.Join(" / ", events.Select(e => e.Error?.ToString() ?? e.Text)));
        Assert.All(events[..8], e => Assert.Null(e.Error));
        var error = Assert.IsType<ApiException>(events[8].Error);
        Assert.Equal("client_not_reading", error.Code);
        Assert.Equal("The client left 8 events of this stream unread, so its generation was ended to free its batch place.", error.Message);
        Assert.Equal(9, seq.CompletionTokens);
    }

    [Fact]
    public async Task AStreamWhoseClientDoesNotReadIsClosed()
    {
        var options = ServerFixture.Options() with { StreamWriteTimeout = TimeSpan.FromSeconds(1) };
        await using var server = await SparseServer.StartAsync(fx.Model, options);
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var before = await Http.WaitIdle(client, TimeSpan.FromSeconds(10));

        // A raw connection with a small receive window that sends one streaming request and never reads.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        await socket.ConnectAsync(server.BaseAddress.Host, server.BaseAddress.Port);
        string body = "{\"prompt\":\"while True:\\n\",\"max_tokens\":2000,\"ignore_eos\":true,\"stream\":true,\"logprobs\":5}";
        string request = $"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\n\r\n{body}";
        await socket.SendAsync(Encoding.UTF8.GetBytes(request));

        // Generation stops well short of max_tokens (its buffers are full and its unread events capped), the
        // server closes the connection, and nothing stays in the batch.
        await Http.WaitFor(client, m => m["sparsedecode_active_sequences"] == 1);
        await Http.WaitIdle(client, TimeSpan.FromSeconds(60));
        var after = await Http.Metrics(client);
        Assert.True(after["sparsedecode_generation_tokens_total"] - before["sparsedecode_generation_tokens_total"] < 2000);
        await Http.WaitFor(client, m => m.Keys.Any(k => k.Contains("endpoint=\"completions\",status=\"499\"", StringComparison.Ordinal)));
        Assert.True(await ClosedByServer(socket, TimeSpan.FromSeconds(30)), "The server kept the stalled connection open.");

        // The server goes on serving.
        var (status, okBody) = await Http.Post(client, "/v1/completions", "{\"prompt\":\"x = \",\"max_tokens\":2}");
        Assert.True(status == 200, okBody.ToString());
    }

    /// <summary>Reads what the server sent until it closes the connection (true) or `timeout` passes (false).</summary>
    private static async Task<bool> ClosedByServer(Socket socket, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[65536];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token) > 0) { }
            return true;
        }
        catch (SocketException)
        {
            return true; // reset
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
