using System.Diagnostics;
using System.Globalization;
using System.Text;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>The latency histograms of /metrics: the histogram's exposition, and what a served request puts in them.</summary>
[Collection("server")]
public class LatencyMetricsTests(ServerFixture fx)
{
    private static long Ticks(double seconds) => (long)(seconds * Stopwatch.Frequency);

    [Fact]
    public void AHistogramCountsEachDurationInTheFirstBucketAtOrAboveIt()
    {
        var h = new LatencyHistogram(0.01, 0.1, 1);
        foreach (double s in new[] { 0.005, 0.01, 0.05, 0.5, 3, -1 }) h.Observe(Ticks(s));
        var sb = new StringBuilder();
        LatencyHistogram.RenderHeader(sb, "x_seconds", "help text");
        h.Render(sb, "x_seconds", "model=\"m\"");
        string[] lines = sb.ToString().TrimEnd('\n').Split('\n');
        Assert.Equal("# HELP x_seconds help text", lines[0]);
        Assert.Equal("# TYPE x_seconds histogram", lines[1]);
        // a negative duration counts as zero; a bound is inclusive (le); the buckets are cumulative
        Assert.Equal("x_seconds_bucket{model=\"m\",le=\"0.01\"} 3", lines[2]);
        Assert.Equal("x_seconds_bucket{model=\"m\",le=\"0.1\"} 4", lines[3]);
        Assert.Equal("x_seconds_bucket{model=\"m\",le=\"1\"} 5", lines[4]);
        Assert.Equal("x_seconds_bucket{model=\"m\",le=\"+Inf\"} 6", lines[5]);
        Assert.StartsWith("x_seconds_sum{model=\"m\"} ", lines[6]);
        double sum = double.Parse(lines[6].Split(' ')[1], CultureInfo.InvariantCulture);
        Assert.Equal(0.005 + 0.01 + 0.05 + 0.5 + 3, sum, 6);
        Assert.Equal("x_seconds_count{model=\"m\"} 6", lines[7]);
        Assert.Equal(8, lines.Length);
    }

    [Theory]
    [InlineData(new double[0])]
    [InlineData(new[] { 0.1, 0.1 })]
    [InlineData(new[] { 0.0, 1 })]
    [InlineData(new[] { 1, double.PositiveInfinity })]
    public void BoundsThatAreNotPositiveFiniteAndIncreasingAreRefused(double[] bounds) =>
        Assert.Throws<ArgumentException>(() => new LatencyHistogram(bounds));

    [Fact]
    public async Task ARequestOfNTokensGivesOneFirstTokenNMinusOneGapsAndOneRequestTimeUnderItsMethod()
    {
        await using var server = await SparseServer.StartAsync(fx.Model, ServerFixture.Options(maxBatch: 2));
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        string empty = await client.GetStringAsync("/metrics");
        Assert.Contains("# TYPE sparsedecode_time_to_first_token_seconds histogram", empty);
        Assert.DoesNotContain("sparsedecode_time_to_first_token_seconds_count", empty);  // no request yet, no samples
        foreach (var (tokens, sparse) in new[] { (6, ""), (4, ",\"sparse\":{\"method\":\"tidal\",\"budget\":64}") })
        {
            var (status, body) = await Http.Post(client, "/v1/completions",
                $"{{\"prompt\":\"def add(a, b):\\n    return\",\"max_tokens\":{tokens},\"temperature\":0,\"ignore_eos\":true{sparse}}}");
            Assert.Equal(200, status);
            Assert.Equal(tokens, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }
        await Http.WaitIdle(client, TimeSpan.FromSeconds(30));
        string text = await client.GetStringAsync("/metrics");
        double Sample(string name, string method) => double.Parse(text.Split('\n')
            .Single(l => l.StartsWith($"{name}{{model=\"{fx.Model.Id}\",method=\"{method}\"}} ", StringComparison.Ordinal)).Split(' ')[1], CultureInfo.InvariantCulture);
        foreach (var (method, tokens) in new[] { ("dense", 6), ("tidal", 4) })
        {
            Assert.Equal(1, Sample("sparsedecode_time_to_first_token_seconds_count", method));
            Assert.Equal(tokens - 1, Sample("sparsedecode_inter_token_latency_seconds_count", method));
            Assert.Equal(1, Sample("sparsedecode_e2e_request_latency_seconds_count", method));
            // the request's whole time covers its first token and every gap after it
            double ttft = Sample("sparsedecode_time_to_first_token_seconds_sum", method), gaps = Sample("sparsedecode_inter_token_latency_seconds_sum", method);
            Assert.True(ttft > 0 && gaps > 0);
            Assert.Equal(ttft + gaps, Sample("sparsedecode_e2e_request_latency_seconds_sum", method), 6);
        }
    }
}
