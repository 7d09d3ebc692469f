using System.Text.Json;
using Microsoft.Extensions.Logging;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;
using SparseDecode.Server.Serving;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>A step's prefill budget shared by all prompts (oldest first): with a budget smaller than one prompt,
/// concurrent prompts take many steps to prefill, in turns, and every completion still equals the request alone;
/// the same with the budget paced to the steps' decoding.</summary>
[Collection("server")]
public class PrefillBudgetTests(ServerFixture fx)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PromptsPrefilledInTurnsUnderASmallBudgetGiveTheSingleRequestResults(bool paced)
    {
        string[] prompts = ["def add(a, b):\n    return", "import os\nimport sys\n", "class Point:\n    def __init__(self", "for i in range(10):\n    print("];
        var options = ServerFixture.Options(maxBatch: 4) with
        {
            Scheduler = new SchedulerOptions { MaxBatch = 4, MaxQueue = 8, PrefillChunk = 3, PrefillBudget = 4, PacePrefill = paced },
        };
        await using var server = await SparseServer.StartAsync(fx.Model, options);
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        var results = await Task.WhenAll(prompts.Select(async p =>
        {
            var (status, body) = await Http.Post(client, "/v1/completions",
                $"{{\"prompt\":{JsonSerializer.Serialize(p)},\"max_tokens\":5,\"temperature\":0}}");
            Assert.Equal(200, status);
            return body.GetProperty("choices")[0].GetProperty("text").GetString();
        }));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(CompletionTests.Reference(fx, prompts[i], 5, out _, out _), results[i]);
    }

    [Fact]
    public void ANegativeBudgetIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            new BatchScheduler(fx.Model, new SchedulerOptions { PrefillBudget = -1 }, new ServerMetrics()));
        Assert.Contains("prefill budget", e.Message);
    }
}
