using System.Text.Json;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Serving;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>The scheduler prefills a step's prompt chunks in one engine call (<see cref="IInferenceEngine.PrefillBatch"/>):
/// concurrent requests whose prompts overlap are prefilled together, and served exactly as each alone; should the
/// batched call fail, the chunks go one at a time and every request is still served, unchanged.</summary>
[Collection("server")]
public class BatchedPrefillTests(ServerFixture fx)
{
    /// <summary>About a thousand tokens: several prefill chunks, so that requests sent together overlap in prefill.</summary>
    private static readonly string Prompt = string.Concat(Enumerable.Repeat(SpeculationTests.LongPrompt, 3));

    private static string Body(int i) =>
        $"{{\"prompt\":{JsonSerializer.Serialize($"# request {i}\n" + Prompt)},\"max_tokens\":6,\"temperature\":0}}";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ConcurrentPromptsArePrefilledTogetherAndServedAsAlone(bool batchFails)
    {
        const int Requests = 6;
        var alone = new string[Requests];
        for (int i = 0; i < Requests; i++)
        {
            var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(i));
            Assert.Equal(200, status);
            alone[i] = Http.Text(body);
        }

        var engine = new CountingEngine(fx.Model.Engine, batchFails);
        using var model = new ServedModel("counting", fx.Model.Directory, engine, fx.Model.Codec);
        await using var server = await SparseServer.StartAsync(model, ServerFixture.Options());
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        var together = await Task.WhenAll(Enumerable.Range(0, Requests).Select(i => Http.Post(client, "/v1/completions", Body(i))));
        for (int i = 0; i < Requests; i++)
        {
            Assert.Equal(200, together[i].Status);
            Assert.Equal(alone[i], Http.Text(together[i].Body));
        }
        Assert.True(engine.Together >= 2, $"no step prefilled two prompts at once (at most {engine.Together})");
        Assert.Equal(batchFails ? engine.Calls : 0, engine.Failed);
    }

    /// <summary>The fixture's engine with its batched prefill counted (and, with `fail`, refused before any work).</summary>
    private sealed class CountingEngine(IInferenceEngine inner, bool fail) : WrappedEngine(inner)
    {
        public int Calls, Failed, Together;

        public override void PrefillBatch(IReadOnlyList<IDecodeSequence> sequences, IReadOnlyList<ReadOnlyMemory<int>> tokens)
        {
            Calls++;
            Together = Math.Max(Together, sequences.Count);
            if (fail)
            {
                Failed++;
                throw new InvalidOperationException("The batched prefill is refused here.");
            }
            base.PrefillBatch(sequences, tokens);
        }
    }
}
