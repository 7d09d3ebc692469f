using System.Text;
using System.Text.Json;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Serving;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>Per-request self-speculative decoding (`sparse.speculate`): served greedily, the output is the dense
/// request's byte for byte — text, finish reason, token count and log-probabilities — for stateless and stateful
/// draft methods, K fixed and adaptive, streamed or not, and with speculating and plain requests sharing the
/// batch; the speculation is reported in usage and /metrics, and bad settings are refused with 400.</summary>
[Collection("server")]
public class SpeculationTests(ServerFixture fx)
{
    /// <summary>Long enough (a few hundred tokens) that small budgets leave most of it out of a draft step, so the
    /// drafts disagree with dense decoding now and then and rejections are exercised.</summary>
    internal static readonly string LongPrompt = BuildPrompt();

    private static string BuildPrompt()
    {
        var sb = new StringBuilder("import math\nimport os\n\n");
        string[] names = ["area", "volume", "scale", "offset", "total", "ratio", "mean", "spread"];
        for (int i = 0; i < names.Length; i++)
        {
            sb.Append($"def {names[i]}(values, factor={i + 2}):\n");
            sb.Append($"    \"\"\"Return the {names[i]} of the values.\"\"\"\n");
            sb.Append("    result = 0\n    for v in values:\n");
            sb.Append($"        result += v * factor - {i}\n");
            sb.Append("    return result\n\n");
        }
        return sb.Append("class Shape:\n    def __init__(self, width, height):\n").ToString();
    }

    private static string Body(string prompt, int maxTokens, string extra = "") =>
        $"{{\"prompt\":{JsonSerializer.Serialize(prompt)},\"max_tokens\":{maxTokens},\"temperature\":0,\"logprobs\":2{extra}}}";

    private static string Sparse(string method, string budget, string speculate) =>
        $",\"sparse\":{{\"method\":\"{method}\",\"budget\":\"{budget}\",\"speculate\":{speculate}}}";

    /// <summary>What the two responses must share: the text, why it ended, how many tokens, each token's logprob.</summary>
    private static string Visible(JsonElement body)
    {
        var choice = body.GetProperty("choices")[0];
        var logprobs = choice.GetProperty("logprobs");
        string lp = logprobs.ValueKind == JsonValueKind.Null ? "" : string.Join(",",
            logprobs.GetProperty("token_logprobs").EnumerateArray().Select(e => e.GetDouble().ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        return $"{choice.GetProperty("text").GetString()}|{choice.GetProperty("finish_reason").GetString()}|{body.GetProperty("usage").GetProperty("completion_tokens").GetInt32()}|{lp}";
    }

    /// <summary>The same request run by <see cref="Generator"/> alone (the command line's speculative loop, the
    /// method's settings as the server resolves them): its text and what speculation did.</summary>
    private (string Text, SpeculationStats Stats) Alone(string prompt, string method, string budget, string speculate, int maxTokens, bool ignoreEos,
        SamplingOptions? sampling = null)
    {
        int[] ids = fx.Model.Codec.Encode(prompt, addSpecialTokens: true);
        var spec = SelectorSpec.Parse(method, budget, MethodDefaults.Load(fx.Model.Directory).Apply(method, new Dictionary<string, string>()));
        var result = new Generator(fx.Model.Engine).Generate(ids, new GenerationOptions
        {
            MaxTokens = maxTokens,
            StopTokenIds = ignoreEos ? [] : fx.Model.StopTokenIds.ToArray(),
            Method = spec,
            Speculation = SpeculationOptions.Parse(speculate.Trim('"')),
            Sampling = sampling ?? SamplingOptions.Greedy,
        });
        var text = new StringBuilder();
        var stream = fx.Model.Codec.CreateStream();
        foreach (int t in result.Tokens)
            if (ignoreEos || !fx.Model.StopTokenIds.Contains(t)) text.Append(stream.Push(t));
        return (text.Append(stream.Flush()).ToString(), result.Speculation!);
    }

    [Theory]
    [InlineData("tidal", "8", "4", 40, "")]
    [InlineData("quest", "16", "2", 40, "")]
    [InlineData("streaming", "8", "3", 40, "")]
    [InlineData("oracle", "8", "16", 40, "")]
    [InlineData("lfps", "8", "\"auto\"", 40, "")]
    [InlineData("prhs", "8", "4", 40, "")]
    [InlineData("hshare", "8", "5", 40, "")]
    [InlineData("lfps", "8", "16", 3, "")]                                   // K beyond what max_tokens leaves
    [InlineData("prhs", "8", "\"auto\"", 1, "")]                             // one token: the prefill's, no round
    [InlineData("tidal", "8", "4", 30, ",\"stop\":[\"return\"]")]           // a stop string inside a round
    [InlineData("lfps", "8", "6", 30, ",\"ignore_eos\":true")]
    public async Task GreedySpeculationEqualsDenseByteForByte(string method, string budget, string speculate, int maxTokens, string extra)
    {
        var (denseStatus, dense) = await Http.Post(fx.Client, "/v1/completions", Body(LongPrompt, maxTokens, extra));
        Assert.Equal(200, denseStatus);
        var (status, speculative) = await Http.Post(fx.Client, "/v1/completions", Body(LongPrompt, maxTokens, extra + Sparse(method, budget, speculate)));
        Assert.Equal(200, status);
        Assert.Equal(Visible(dense), Visible(speculative));
        Assert.False(dense.GetProperty("usage").TryGetProperty("speculation", out _));
        var usage = speculative.GetProperty("usage").GetProperty("speculation");
        int passes = usage.GetProperty("passes").GetInt32();
        long drafted = usage.GetProperty("drafted_tokens").GetInt64(), accepted = usage.GetProperty("accepted_tokens").GetInt64();
        Assert.True(usage.GetProperty("exact").GetBoolean());
        // every completion token after the prefill's first is a kept draft or a pass's own token
        int completion = speculative.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.InRange(accepted, 0, drafted);
        Assert.InRange(completion, 1, 1 + passes + accepted);
        if (maxTokens > 1) Assert.True(passes > 0);
        // The rounds inside the batched steps are the command line's rounds: the same drafts proposed and kept
        // (a draft step as a row of the batch must be the plan's own step, its state saved and rolled back alike).
        // A stop string ends the served request early, so its counts are a prefix of the loop's.
        if (extra.Contains("stop")) return;
        var (text, stats) = Alone(LongPrompt, method, budget, speculate, maxTokens, extra.Contains("ignore_eos"));
        Assert.Equal(text, Http.Text(speculative));
        Assert.Equal((stats.Passes, stats.Drafted, stats.Accepted), (passes, drafted, accepted));
    }

    /// <summary>The theory above would pass if no draft were ever rejected; at these budgets the stateful methods'
    /// drafts are, so their rollback is what the equality covers.</summary>
    [Theory]
    [InlineData("lfps")]
    [InlineData("prhs")]
    [InlineData("tidal")]
    public async Task SmallBudgetsRejectDrafts(string method)
    {
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(LongPrompt, 40, Sparse(method, "8", "4")));
        Assert.Equal(200, status);
        var usage = body.GetProperty("usage").GetProperty("speculation");
        Assert.True(usage.GetProperty("accepted_tokens").GetInt64() < usage.GetProperty("drafted_tokens").GetInt64(),
            $"{method}: every draft was kept ({usage})");
    }

    [Fact]
    public async Task StreamedSpeculationReassemblesToTheDenseCompletion()
    {
        var (_, dense) = await Http.Post(fx.Client, "/v1/completions", Body(LongPrompt, 32));
        var events = await Http.PostStream(fx.Client, "/v1/completions",
            Body(LongPrompt, 32, Sparse("lfps", "8", "\"auto\"") + ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"));
        var (text, finish, usage) = Http.ReassembleCompletion(events);
        var speculated = usage ?? throw new Xunit.Sdk.XunitException("The stream sent no usage chunk.");
        // the text, the finish reason and the token count as the dense response has them (its logprobs dropped)
        string denseVisible = Visible(dense);
        Assert.Equal(denseVisible[..denseVisible.LastIndexOf('|')],
            $"{text}|{finish}|{speculated.GetProperty("completion_tokens").GetInt32()}");
        Assert.True(speculated.GetProperty("speculation").GetProperty("passes").GetInt32() > 0);
    }

    [Fact]
    public async Task ChatSpeculationEqualsDenseChat()
    {
        const string chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"Write a Python function that sorts a list of numbers.\"}],\"max_tokens\":24,\"temperature\":0";
        var (_, dense) = await Http.Post(fx.Client, "/v1/chat/completions", chat + "}");
        var (status, speculative) = await Http.Post(fx.Client, "/v1/chat/completions", chat + Sparse("prhs", "4", "3") + "}");
        Assert.Equal(200, status);
        Assert.Equal(dense.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(),
            speculative.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(dense.GetProperty("choices")[0].GetProperty("finish_reason").GetString(),
            speculative.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    /// <summary>Speculating requests of several methods and plain ones (dense, sparse), streamed and not, share the
    /// batch (12 of them in a batch of 8, so some queue and join mid-flight): every speculating one equals its dense
    /// result, every plain one its own result alone, and /metrics adds up what the responses report.</summary>
    [Fact]
    public async Task ConcurrentSpeculatingAndPlainRequestsEachMatchTheirResultAlone()
    {
        const int maxTokens = 24;
        string[] prompts = [LongPrompt, LongPrompt[..(LongPrompt.Length / 2)], "def fibonacci(n):\n", CompletionTests.Prompt + "    if n < 2:\n"];
        string[] settings = ["", Sparse("tidal", "8", "4"), Sparse("lfps", "8", "\"auto\""), Sparse("prhs", "8", "2"),
            ",\"sparse\":{\"method\":\"quest\",\"budget\":\"16\"}", Sparse("quest", "16", "3")];
        var expected = new Dictionary<string, string>();
        foreach (string p in prompts)
        {
            var (_, alone) = await Http.Post(fx.Client, "/v1/completions", Body(p, maxTokens));
            expected[p] = Http.Text(alone);
            // a plain sparse request's own result (it is not dense decoding's)
            var (_, quest) = await Http.Post(fx.Client, "/v1/completions", Body(p, maxTokens, settings[4]));
            expected[p + settings[4]] = Http.Text(quest);
        }
        var before = await Http.WaitIdle(fx.Client, TimeSpan.FromSeconds(10));

        var results = await Task.WhenAll(Enumerable.Range(0, 12).Select(async i =>
        {
            string p = prompts[i % prompts.Length], setting = settings[i % settings.Length];
            string key = setting == settings[4] ? p + setting : p;
            if (i % 3 == 0)
            {
                var (text, _, usage) = Http.ReassembleCompletion(await Http.PostStream(fx.Client, "/v1/completions",
                    Body(p, maxTokens, setting + ",\"stream\":true,\"stream_options\":{\"include_usage\":true}")));
                return (key, text, usage!.Value);
            }
            var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(p, maxTokens, setting));
            Assert.Equal(200, status);
            return (key, Http.Text(body), body.GetProperty("usage").Clone());
        }));
        long passes = 0, drafted = 0, accepted = 0;
        foreach (var (key, text, usage) in results)
        {
            Assert.Equal(expected[key], text);
            if (!usage.TryGetProperty("speculation", out var s)) continue;
            passes += s.GetProperty("passes").GetInt32();
            drafted += s.GetProperty("drafted_tokens").GetInt64();
            accepted += s.GetProperty("accepted_tokens").GetInt64();
        }
        Assert.True(passes > 0);
        var after = await Http.WaitIdle(fx.Client, TimeSpan.FromSeconds(10));
        Assert.Equal(passes, after["sparsedecode_speculative_passes_total"] - before["sparsedecode_speculative_passes_total"]);
        Assert.Equal(drafted, after["sparsedecode_speculative_draft_tokens_total"] - before["sparsedecode_speculative_draft_tokens_total"]);
        Assert.Equal(accepted, after["sparsedecode_speculative_accepted_tokens_total"] - before["sparsedecode_speculative_accepted_tokens_total"]);
    }

    /// <summary>Sampled speculation draws with the request's seeded sampler in the command line's order (the
    /// first token from the prompt's logits, then each round's drafts, acceptances and resamples): the served text
    /// and counts are <see cref="Generator"/>'s with the same seed, so the speculative-sampling rule that makes each
    /// token distributed as dense sampling's (tested on the decoder) is the one served.</summary>
    [Theory]
    [InlineData("lfps", "4")]
    [InlineData("tidal", "\"auto\"")]
    public async Task SeededSampledSpeculationIsTheDecodersOwn(string method, string speculate)
    {
        string body = $"{{\"prompt\":{JsonSerializer.Serialize(LongPrompt)},\"max_tokens\":20,\"temperature\":0.8,\"top_p\":0.95,\"seed\":99{Sparse(method, "8", speculate)}}}";
        var (s1, a) = await Http.Post(fx.Client, "/v1/completions", body);
        var (s2, b) = await Http.Post(fx.Client, "/v1/completions", body);
        Assert.Equal(200, s1);
        Assert.Equal(200, s2);
        Assert.Equal(Http.Text(a), Http.Text(b));
        var usage = a.GetProperty("usage").GetProperty("speculation");
        var (text, stats) = Alone(LongPrompt, method, "8", speculate, 20, ignoreEos: false, new SamplingOptions(0.8f, 0, 0.95f, 99));
        Assert.Equal(text, Http.Text(a));
        Assert.Equal((stats.Passes, stats.Drafted, stats.Accepted),
            (usage.GetProperty("passes").GetInt32(), usage.GetProperty("drafted_tokens").GetInt64(), usage.GetProperty("accepted_tokens").GetInt64()));
        Assert.True(stats.Drafted > stats.Accepted, "some drafts must be rejected, so that the resampling is served");
    }

    public static TheoryData<string> BadSettings => new()
    {
        "{\"method\": \"tidal\", \"speculate\": 0}",
        "{\"method\": \"tidal\", \"speculate\": 17}",
        "{\"method\": \"tidal\", \"speculate\": -4}",
        "{\"method\": \"tidal\", \"speculate\": 2.5}",
        "{\"method\": \"tidal\", \"speculate\": 1e3}",
        "{\"method\": \"tidal\", \"speculate\": 99999999999999}",
        "{\"method\": \"tidal\", \"speculate\": \"fast\"}",
        "{\"method\": \"tidal\", \"speculate\": \"\"}",
        "{\"method\": \"tidal\", \"speculate\": true}",
        "{\"method\": \"tidal\", \"speculate\": [4]}",
        "{\"method\": \"tidal\", \"speculate\": {\"k\": 4}}",
        "{\"method\": \"dense\", \"speculate\": 4}",
        "{\"speculate\": \"auto\"}",                                           // the server's default method is dense
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task BadSpeculationSettingsAreRefused(string sparse)
    {
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", $"{{\"prompt\":\"x = \",\"max_tokens\":4,\"sparse\":{sparse}}}");
        Http.AssertError(status, body, 400, "sparse.speculate", "invalid_sparse");
        string message = body.GetProperty("error").GetProperty("message").GetString()!;
        Assert.EndsWith(".", message);
        Assert.DoesNotContain('\n', message);
        var (chatStatus, chatBody) = await Http.Post(fx.Client, "/v1/chat/completions",
            $"{{\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"stream\":true,\"sparse\":{sparse}}}");
        Http.AssertError(chatStatus, chatBody, 400, "sparse.speculate", "invalid_sparse");
        await Http.WaitIdle(fx.Client, TimeSpan.FromSeconds(10));
    }

    /// <summary>On an engine whose sequences keep no checkpoints of the plan's state, a method that carries state
    /// cannot roll back a rejected draft: refused with 400; a stateless one speculates, verified by the engine's
    /// prefill (reported as not exact).</summary>
    [Fact]
    public async Task WithoutCheckpointsOnlyStatelessMethodsSpeculate()
    {
        using var plain = new ServedModel("plain", fx.Model.Directory, new PlainEngine(fx.Model.Engine), fx.Model.Codec);
        Assert.True(fx.Model.SpeculativeSequences);
        Assert.False(plain.SpeculativeSequences);
        await using var server = await SparseServer.StartAsync(plain, ServerFixture.Options());
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        foreach (string method in (string[])["lfps", "prhs", "hshare"])
        {
            var (status, body) = await Http.Post(client, "/v1/completions", Body(LongPrompt, 8, Sparse(method, "8", "4")));
            Http.AssertError(status, body, 400, "sparse.speculate", "invalid_sparse");
            Assert.Contains(method, body.GetProperty("error").GetProperty("message").GetString());
        }
        var (okStatus, ok) = await Http.Post(client, "/v1/completions", Body(LongPrompt, 12, Sparse("tidal", "8", "4")));
        Assert.Equal(200, okStatus);
        var usage = ok.GetProperty("usage").GetProperty("speculation");
        Assert.False(usage.GetProperty("exact").GetBoolean());
        Assert.True(usage.GetProperty("passes").GetInt32() > 0);
    }

    /// <summary>An engine whose sequences are plain <see cref="IDecodeSequence"/>s (no exact dense pass, no plan
    /// checkpoints), as a backend without <see cref="ISpeculativeSequence"/> serves them.</summary>
    private sealed class PlainEngine(IInferenceEngine inner) : WrappedEngine(inner)
    {
        public override bool SupportsObserver => false;
        public override IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null) => new WrappedSequence(Inner.CreateSequence(capacity, plan));
    }
}
