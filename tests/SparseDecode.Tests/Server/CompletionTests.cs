using System.Text;
using System.Text.Json;
using SparseDecode.Engine;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>The generation endpoints against a real Kestrel: results equal the engine's own greedy decoding,
/// streams reassemble to the whole response, and the OpenAI response shapes hold.</summary>
[Collection("server")]
public class CompletionTests(ServerFixture fx)
{
    internal const string Prompt = "def fibonacci(n):\n";

    /// <summary>The engine's own greedy continuation of a prompt, decoded to text: what the server must return.</summary>
    internal static string Reference(ServerFixture fx, string prompt, int maxTokens, out int promptTokens, out int completionTokens)
    {
        int[] ids = fx.Model.Codec.Encode(prompt, addSpecialTokens: true);
        promptTokens = ids.Length;
        var result = new Generator(fx.Model.Engine).Generate(ids, new GenerationOptions
        {
            MaxTokens = maxTokens,
            StopTokenIds = fx.Model.StopTokenIds.ToArray(),
        });
        completionTokens = result.Tokens.Length;
        var text = new StringBuilder();
        var stream = fx.Model.Codec.CreateStream();
        foreach (int t in result.Tokens)
            if (!fx.Model.StopTokenIds.Contains(t)) text.Append(stream.Push(t));
        return text.Append(stream.Flush()).ToString();
    }

    private static string Body(string prompt, int maxTokens, string extra = "") =>
        $"{{\"model\":\"x\",\"prompt\":{JsonSerializer.Serialize(prompt)},\"max_tokens\":{maxTokens},\"temperature\":0{extra}}}";

    [Fact]
    public async Task CompletionEqualsTheEnginesGreedyDecoding()
    {
        string expected = Reference(fx, Prompt, 12, out int promptTokens, out int completionTokens);
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 12));
        Assert.Equal(200, status);
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", body.GetProperty("id").GetString());
        Assert.Equal(fx.Model.Id, body.GetProperty("model").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(expected, choice.GetProperty("text").GetString());
        Assert.Equal(completionTokens == 12 ? "length" : "stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
        var usage = body.GetProperty("usage");
        Assert.Equal(promptTokens, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(completionTokens, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(promptTokens + completionTokens, usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task TokenIdPromptEqualsTextPrompt()
    {
        int[] ids = fx.Model.Codec.Encode(Prompt, addSpecialTokens: true);
        var (_, byText) = await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 6));
        var (status, byIds) = await Http.Post(fx.Client, "/v1/completions",
            $"{{\"prompt\":[{string.Join(",", ids)}],\"max_tokens\":6,\"temperature\":0}}");
        Assert.Equal(200, status);
        Assert.Equal(byText.GetProperty("choices")[0].GetProperty("text").GetString(), byIds.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task StreamedChunksReassembleToTheWholeCompletion()
    {
        var (_, whole) = await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 12));
        var events = await Http.PostStream(fx.Client, "/v1/completions",
            Body(Prompt, 12, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"));
        var (text, finish, usage) = Http.ReassembleCompletion(events);
        var wholeChoice = whole.GetProperty("choices")[0];
        Assert.Equal(wholeChoice.GetProperty("text").GetString(), text);
        Assert.Equal(wholeChoice.GetProperty("finish_reason").GetString(), finish);
        Assert.NotNull(usage);
        Assert.Equal(whole.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), usage.Value.GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ChatStreamReassemblesToTheWholeChatCompletion()
    {
        const string chat = "{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"Write Python.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"A function that adds two numbers.\"}]}],\"max_tokens\":10,\"temperature\":0";
        var (status, whole) = await Http.Post(fx.Client, "/v1/chat/completions", chat + "}");
        Assert.Equal(200, status);
        Assert.Equal("chat.completion", whole.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", whole.GetProperty("id").GetString());
        var message = whole.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("assistant", message.GetProperty("role").GetString());

        // The bundled model has no chat template: the documented plain format, and its text is what the server decoded.
        string rendered = "System: Write Python.\n\nUser: A function that adds two numbers.\n\nAssistant:";
        Assert.Equal(rendered, fx.Model.Template.Render([new("system", "Write Python."), new("user", "A function that adds two numbers.")]));
        string expected = Reference(fx, rendered, 10, out int promptTokens, out _);
        int stopAt = expected.IndexOf("\n\nUser:", StringComparison.Ordinal);
        Assert.Equal(stopAt < 0 ? expected : expected[..stopAt], message.GetProperty("content").GetString());
        Assert.Equal(promptTokens, whole.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        var events = await Http.PostStream(fx.Client, "/v1/chat/completions", chat + ",\"stream\":true}");
        Assert.Equal("[DONE]", events[^1]);
        var text = new StringBuilder();
        string? finish = null;
        for (int i = 0; i < events.Count - 1; i++)
        {
            using var doc = JsonDocument.Parse(events[i]);
            Assert.Equal("chat.completion.chunk", doc.RootElement.GetProperty("object").GetString());
            var choice = doc.RootElement.GetProperty("choices")[0];
            var delta = choice.GetProperty("delta");
            if (i == 0) Assert.Equal("assistant", delta.GetProperty("role").GetString());
            if (delta.TryGetProperty("content", out var c)) text.Append(c.GetString());
            if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = choice.GetProperty("finish_reason").GetString();
        }
        Assert.Equal(message.GetProperty("content").GetString(), text.ToString());
        Assert.Equal(whole.GetProperty("choices")[0].GetProperty("finish_reason").GetString(), finish);
    }

    [Fact]
    public async Task StopStringCutsTheTextBeforeIt()
    {
        string full = Reference(fx, Prompt, 16, out _, out _);
        Assert.True(full.Length >= 6, $"reference too short: '{full}'");
        string stop = full.Substring(3, 3);
        int cut = full.IndexOf(stop, StringComparison.Ordinal);
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 16, $",\"stop\":[{JsonSerializer.Serialize(stop)},\"\\u0001never\"]"));
        Assert.Equal(200, status);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(full[..cut], choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());

        // The same through a stream: the stop string is never sent, not even in part.
        var events = await Http.PostStream(fx.Client, "/v1/completions", Body(Prompt, 16, $",\"stop\":{JsonSerializer.Serialize(stop)},\"stream\":true"));
        var text = new StringBuilder();
        foreach (string e in events[..^1])
        {
            using var doc = JsonDocument.Parse(e);
            text.Append(doc.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
        }
        Assert.Equal(full[..cut], text.ToString());
    }

    [Fact]
    public async Task LogprobsDescribeTheGeneratedTokens()
    {
        var (status, body) = await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 5, ",\"logprobs\":3"));
        Assert.Equal(200, status);
        var lp = body.GetProperty("choices")[0].GetProperty("logprobs");
        int n = body.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        Assert.Equal(n, lp.GetProperty("tokens").GetArrayLength());
        Assert.Equal(n, lp.GetProperty("text_offset").GetArrayLength());
        var tops = lp.GetProperty("top_logprobs").EnumerateArray().ToArray();
        var chosen = lp.GetProperty("token_logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        for (int i = 0; i < n; i++)
        {
            var top = tops[i].EnumerateObject().Select(p => p.Value.GetDouble()).ToArray();
            Assert.InRange(top.Length, 1, 3);
            Assert.All(top, v => Assert.True(v <= 0));
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(top.Max(), chosen[i], 5);
        }

        var (chatStatus, chat) = await Http.Post(fx.Client, "/v1/chat/completions",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":3,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":2}");
        Assert.Equal(200, chatStatus);
        var content = chat.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content");
        Assert.Equal(chat.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), content.GetArrayLength());
        foreach (var t in content.EnumerateArray())
        {
            Assert.True(t.GetProperty("logprob").GetDouble() <= 0);
            Assert.Equal(2, t.GetProperty("top_logprobs").GetArrayLength());
            Assert.Equal(t.GetProperty("top_logprobs")[0].GetProperty("logprob").GetDouble(), t.GetProperty("logprob").GetDouble(), 5);
        }
    }

    [Fact]
    public async Task SeededSamplingRepeats()
    {
        string body = $"{{\"prompt\":{JsonSerializer.Serialize(Prompt)},\"max_tokens\":8,\"temperature\":1.0,\"top_p\":0.9,\"seed\":1234}}";
        var (s1, a) = await Http.Post(fx.Client, "/v1/completions", body);
        var (s2, b) = await Http.Post(fx.Client, "/v1/completions", body);
        Assert.Equal(200, s1);
        Assert.Equal(200, s2);
        Assert.Equal(a.GetProperty("choices")[0].GetProperty("text").GetString(), b.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task SparseFieldPicksTheMethodPerRequest()
    {
        // Dense named explicitly equals the server's default (dense); a sparse method is accepted with its budget.
        var (_, dflt) = await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 8));
        var (s1, dense) = await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 8, ",\"sparse\":{\"method\":\"dense\"}"));
        Assert.Equal(200, s1);
        Assert.Equal(dflt.GetProperty("choices")[0].GetProperty("text").GetString(), dense.GetProperty("choices")[0].GetProperty("text").GetString());
        string sparseMethod = SparseDecode.Selection.SelectorSpec.Methods.First(m => m != "dense");
        var (s2, sparse) = await Http.Post(fx.Client, "/v1/completions",
            Body(Prompt, 8, $",\"sparse\":{{\"method\":\"{sparseMethod}\",\"budget\":4096}}"));
        Assert.Equal(200, s2);
        Assert.InRange(sparse.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 1, 8);
    }

    [Fact]
    public async Task ModelsHealthAndMetrics()
    {
        using var doc = JsonDocument.Parse(await fx.Client.GetStringAsync("/v1/models"));
        var data = doc.RootElement.GetProperty("data");
        Assert.Equal("list", doc.RootElement.GetProperty("object").GetString());
        Assert.Equal(fx.Model.Id, data[0].GetProperty("id").GetString());
        Assert.Equal("model", data[0].GetProperty("object").GetString());
        Assert.Equal(fx.Model.Context, data[0].GetProperty("max_model_len").GetInt32());

        using var health = JsonDocument.Parse(await fx.Client.GetStringAsync("/health"));
        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());

        await Http.Post(fx.Client, "/v1/completions", Body(Prompt, 2));
        using var response = await fx.Client.GetAsync("/metrics");
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.ToString());
        string text = await response.Content.ReadAsStringAsync();
        Assert.Contains("# TYPE sparsedecode_requests_total counter", text);
        Assert.Contains("# TYPE sparsedecode_decode_tokens_per_second gauge", text);
        var m = await Http.Metrics(fx.Client);
        Assert.True(m[$"sparsedecode_requests_total{{model=\"{fx.Model.Id}\",endpoint=\"completions\",status=\"200\"}}"] >= 1);
        Assert.True(m["sparsedecode_generation_tokens_total"] >= 2);
        Assert.True(m["sparsedecode_prompt_tokens_total"] >= 1);
        Assert.True(m["sparsedecode_decode_tokens_per_second"] > 0);
        Assert.Equal(64, m["sparsedecode_queue_capacity"]);
        Assert.Equal(double.PositiveInfinity, m["sparsedecode_prefill_budget_tokens"]);  // the fixture sets no budget
    }
}
