using System.Text.Json;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Serving;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>The scheduler admits a request only when the engine has room for its prompt plus max_tokens
/// (<see cref="IInferenceEngine.HasRoomFor"/>, the GPU's KV cache pool): requests beyond what the cache holds wait in
/// line, never overcommit it, and are served exactly as alone once earlier ones end.</summary>
[Collection("server")]
public class KvRoomTests(ServerFixture fx)
{
    private static string Body(int i) =>
        $"{{\"prompt\":{JsonSerializer.Serialize($"# request {i}\n" + SpeculationTests.LongPrompt)},\"max_tokens\":8,\"temperature\":0}}";

    private const int Requests = 6;

    /// <summary>Each request's text served alone by the fixture, and the most positions one of them needs.</summary>
    private async Task<(string[] Alone, int Need)> ServedAlone()
    {
        var alone = new string[Requests];
        int need = 0;
        for (int i = 0; i < Requests; i++)
        {
            var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(i));
            Assert.Equal(200, status);
            alone[i] = Http.Text(body);
            need = Math.Max(need, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() + 8);
        }
        return (alone, need);
    }

    /// <summary>All requests at once to a server of `engine` without kept prompt caches (only the batch holds room):
    /// each must be served as it was alone.</summary>
    private async Task ServedTogetherAsAlone(IInferenceEngine engine, string[] alone)
    {
        using var model = new ServedModel("bounded", fx.Model.Directory, engine, fx.Model.Codec);
        var options = ServerFixture.Options() with { Scheduler = ServerFixture.Options().Scheduler with { PrefixCacheEntries = 0 } };
        await using var server = await SparseServer.StartAsync(model, options);
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        var together = await Task.WhenAll(Enumerable.Range(0, Requests).Select(i => Http.Post(client, "/v1/completions", Body(i))));
        for (int i = 0; i < Requests; i++)
        {
            Assert.Equal(200, together[i].Status);
            Assert.Equal(alone[i], Http.Text(together[i].Body));
        }
    }

    [Fact]
    public async Task RequestsBeyondTheCachesRoomWaitAndAreServedAsAlone()
    {
        var (alone, need) = await ServedAlone();
        // room for two of the requests at a time
        var engine = new BoundedEngine(fx.Model.Engine, 2 * need + need / 2);
        await ServedTogetherAsAlone(engine, alone);
        Assert.True(engine.MostHeld <= engine.Room, $"{engine.MostHeld} positions held at once in a cache of {engine.Room}");
        Assert.True(engine.Refused > 0, "no request ever waited for room");
        Assert.Equal(0, engine.Overcommitted);
        // a response can reach its client before the scheduler frees the sequence at the end of that step
        for (int i = 0; i < 200 && Volatile.Read(ref engine.Held) > 0; i++) await Task.Delay(25);
        Assert.Equal(0, Volatile.Read(ref engine.Held));
    }

    /// <summary>The CPU engine's own bound in bytes (`serve --kv-cache-gb`) makes requests wait the same way: room for
    /// two of six at a time, each served as alone, every byte back at the end.</summary>
    [Fact]
    public async Task ACpuEngineBoundInBytesMakesRequestsWaitAndServesThemAsAlone()
    {
        var (alone, need) = await ServedAlone();
        var shared = (SparseDecode.Cpu.CpuEngine)fx.Model.Engine;
        long one = SparseDecode.Cpu.KvCache.BytesFor(shared.Config, shared.CacheType, need);
        using var bounded = new SparseDecode.Cpu.CpuEngine(shared.Model, shared.CacheType, ownsModel: false, kvCacheBytes: 2 * one + one / 2);
        var counting = new CountingRoom(bounded);
        await ServedTogetherAsAlone(counting, alone);
        Assert.True(counting.Refused > 0, "no request ever waited for room");
        for (int i = 0; i < 200 && bounded.KvPool.Free != bounded.KvPool.Total; i++) await Task.Delay(25);
        Assert.Equal(bounded.KvPool.Total, bounded.KvPool.Free);
    }

    /// <summary>A request that needs more KV cache than the engine holds when empty is refused with 503
    /// kv_cache_full, and the requests behind it are served; it does not wait in line for ever.</summary>
    [Fact]
    public async Task ARequestLargerThanTheWholeCacheIsRefusedAndDoesNotHoldUpTheLine()
    {
        var shared = (SparseDecode.Cpu.CpuEngine)fx.Model.Engine;
        // room for short requests, never for 2,000 positions
        long bound = SparseDecode.Cpu.KvCache.BytesFor(shared.Config, shared.CacheType, 600);
        using var bounded = new SparseDecode.Cpu.CpuEngine(shared.Model, shared.CacheType, ownsModel: false, kvCacheBytes: bound);
        using var model = new ServedModel("bounded", fx.Model.Directory, bounded, fx.Model.Codec);
        var options = ServerFixture.Options() with { Scheduler = ServerFixture.Options().Scheduler with { PrefixCacheEntries = 0 } };
        await using var server = await SparseServer.StartAsync(model, options);
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var big = Http.Post(client, "/v1/completions", "{\"prompt\":\"def f(x):\",\"max_tokens\":2000,\"temperature\":0}");
        var small = Http.Post(client, "/v1/completions", "{\"prompt\":\"def g(y):\",\"max_tokens\":4,\"temperature\":0}");
        var (bigStatus, bigBody) = await big;
        Assert.Equal(503, bigStatus);
        Assert.Equal("kv_cache_full", bigBody.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("need more KV cache than the server's", bigBody.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(200, (await small).Status);
        Assert.Equal(200, (await Http.Post(client, "/v1/completions", "{\"prompt\":\"def h(z):\",\"max_tokens\":4,\"temperature\":0}")).Status);
    }

    /// <summary>An engine that counts the times it had no room.</summary>
    private sealed class CountingRoom(IInferenceEngine inner) : WrappedEngine(inner)
    {
        public int Refused;

        public override bool HasRoomFor(int capacity, SelectionPlan? plan = null)
        {
            bool fits = Inner.HasRoomFor(capacity, plan);
            if (!fits) Interlocked.Increment(ref Refused);
            return fits;
        }
    }

    /// <summary>Kept prompt caches hold room too: a request that needs it frees them, least recently used first, instead
    /// of waiting behind them.</summary>
    [Fact]
    public async Task KeptPromptCachesGiveWayToARequestThatNeedsTheRoom()
    {
        var (_, one) = await Http.Post(fx.Client, "/v1/completions", Body(0));
        int need = one.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() + 8 + 16;
        // room for one request and a half: every kept cache must go before the next request fits
        var engine = new BoundedEngine(fx.Model.Engine, need + need / 2);
        using var model = new ServedModel("bounded", fx.Model.Directory, engine, fx.Model.Codec);
        var options = ServerFixture.Options() with { Scheduler = ServerFixture.Options().Scheduler with { PrefixCacheEntries = 2 } };
        await using var server = await SparseServer.StartAsync(model, options);
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        for (int i = 0; i < 4; i++)
        {
            var (status, body) = await Http.Post(client, "/v1/completions", Body(i));
            Assert.Equal(200, status);
        }
        Assert.True(engine.Refused > 0, "no request found the room taken by kept caches");
        Assert.True(engine.MostHeld <= engine.Room);
        Assert.Equal(0, engine.Overcommitted);
    }

    /// <summary>A request whose first token comes later than the stream timeout (it waits in line, or its prompt is
    /// long) keeps its stream: the timeout is for a client that does not read, not for the server's own work.</summary>
    [Fact]
    public async Task AStreamWhoseFirstTokenComesAfterTheStreamTimeoutIsKept()
    {
        var engine = new SlowPrefillEngine(fx.Model.Engine, TimeSpan.FromSeconds(2));
        using var model = new ServedModel("slow", fx.Model.Directory, engine, fx.Model.Codec);
        await using var server = await SparseServer.StartAsync(model, ServerFixture.Options() with { StreamWriteTimeout = TimeSpan.FromSeconds(1) });
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var events = await Http.PostStream(client, "/v1/completions", "{\"prompt\":\"def add(a, b):\",\"max_tokens\":4,\"temperature\":0,\"stream\":true}");
        var (text, finish, _) = Http.ReassembleCompletion(events);
        Assert.Equal("length", finish);
        Assert.NotEmpty(text);
    }

    /// <summary>The fixture's engine with every prompt's prefill `delay` slower.</summary>
    private sealed class SlowPrefillEngine(IInferenceEngine inner, TimeSpan delay) : WrappedEngine(inner)
    {
        public override IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null) => new Slow(Inner.CreateSequence(capacity, plan), delay);

        public override void PrefillBatch(IReadOnlyList<IDecodeSequence> sequences, IReadOnlyList<ReadOnlyMemory<int>> tokens)
        {
            for (int i = 0; i < sequences.Count; i++) sequences[i].Prefill(tokens[i].Span);
        }

        private sealed class Slow(IDecodeSequence inner, TimeSpan delay) : WrappedSequence(inner)
        {
            public override void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null)
            {
                Thread.Sleep(delay);
                base.Prefill(tokens, everyLogits, progress);
            }
        }
    }

    /// <summary>The fixture's engine with a cache of `room` positions: sequences hold their capacity until disposed.</summary>
    private sealed class BoundedEngine(IInferenceEngine inner, int room) : WrappedEngine(inner)
    {
        public int Room => room;
        public int Held, MostHeld, Refused, Overcommitted;

        public override bool HasRoomFor(int capacity, SelectionPlan? plan = null)
        {
            bool fits = Volatile.Read(ref Held) + capacity <= room;
            if (!fits) Interlocked.Increment(ref Refused);
            return fits;
        }

        public override IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null)
        {
            int held = Interlocked.Add(ref Held, capacity);
            if (held > room)
            {
                Interlocked.Add(ref Held, -capacity);
                Interlocked.Increment(ref Overcommitted);
                throw new KvCacheFullException($"{capacity} positions asked, {room - held + capacity} free.");
            }
            int seen;
            while ((seen = Volatile.Read(ref MostHeld)) < held && Interlocked.CompareExchange(ref MostHeld, held, seen) != seen) { }
            return new Holder(this, Inner.CreateSequence(capacity, plan), capacity);
        }

        /// <summary>A sequence that gives its positions back when disposed.</summary>
        private sealed class Holder(BoundedEngine engine, IDecodeSequence inner, int positions) : WrappedSequence(inner)
        {
            private bool _disposed;

            public override IDecodeSequence Fork(int capacity, SelectionPlan? plan = null) => throw new NotSupportedException("The scheduler does not fork.");

            public override void Dispose()
            {
                if (_disposed) return;
                _disposed = true;
                base.Dispose();
                Interlocked.Add(ref engine.Held, -positions);
            }
        }
    }
}
