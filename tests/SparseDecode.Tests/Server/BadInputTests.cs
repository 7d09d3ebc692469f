using System.Net;
using System.Text;
using System.Text.Json;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>Every kind of bad request gets OpenAI's error object with the right 4xx status, and the server keeps
/// serving afterwards with nothing left queued, active or allocated.</summary>
[Collection("server")]
public class BadInputTests(ServerFixture fx)
{
    public static TheoryData<string, string, int, string?> Cases => new()
    {
        // path, body, status, param
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 4", 400, null },                     // truncated JSON
        { "/v1/completions", "not json at all", 400, null },
        { "/v1/completions", "[1, 2, 3]", 400, null },                                                  // not an object
        { "/v1/completions", "{\"max_tokens\": 4}", 400, "prompt" },                                    // missing prompt
        { "/v1/completions", "{\"prompt\": 17}", 400, "prompt" },                                       // wrong type
        { "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt" },                           // two prompts
        { "/v1/completions", "{\"prompt\": [1, -2]}", 400, "prompt" },                                  // bad token id
        { "/v1/completions", "{\"prompt\": [999999999]}", 400, "prompt" },                              // id outside vocab
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"ten\"}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2.5}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": -5}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 100000}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 1e30}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", 400, "temperature" },
        { "/v1/completions", "{\"prompt\": \"x\", \"temperature\": 3}", 400, "temperature" },
        { "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 1.5}", 400, "top_p" },
        { "/v1/completions", "{\"prompt\": \"x\", \"seed\": \"abc\"}", 400, "seed" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": 5}", 400, "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"a\", 1]}", 400, "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"n\": 2}", 400, "n" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": \"" + new string('a', 257) + "\"}", 400, "stop" },       // rescanned every token
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"b\", \"" + new string('a', 100000) + "\"]}", 400, "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"n\": \"1\"}", 400, "n" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stream\": \"yes\"}", 400, "stream" },
        { "/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 9}", 400, "logprobs" },
        { "/v1/completions", "{\"prompt\": \"x\", \"model\": 3}", 400, "model" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": \"quest\"}", 400, "sparse" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": \"no-such-method\"}}", 400, "sparse.method" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": 7}}", 400, "sparse.method" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": \"dense\", \"budget\": \"lots\"}}", 400, "sparse.budget" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": \"quest\", \"budget\": \"NaN%\"}}", 400, "sparse.budget" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": \"lfps\", \"params\": {\"history\": 100000}}}", 400, "sparse.params.history" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": \"lfps\", \"params\": {\"history\": 2147483647}}}", 400, "sparse.params.history" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": \"prhs\", \"params\": {\"top\": 2000000000}}}", 400, "sparse.params.top" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"method\": \"lfps\", \"params\": {\"nope\": 1}}}", 400, "sparse.params.nope" },
        { "/v1/completions", "{\"prompt\": \"\\ud800\"}", 400, "prompt" },                            // lone surrogate
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"\\udc00a\"]}", 400, "stop" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\ud83d\"}]}", 400, "messages" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"budget\": [1]}}", 400, "sparse.budget" },
        { "/v1/completions", "{\"prompt\": \"x\", \"sparse\": {\"params\": {\"window\": [1]}}}", 400, "sparse.params.window" },
        { "/v1/chat/completions", "{\"messages\": \"hi\"}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": []}", 400, "messages" },
        { "/v1/chat/completions", "{}", 400, "messages" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", 400, "messages[0].role" },
        { "/v1/chat/completions", "{\"messages\": [{\"content\": \"x\"}]}", 400, "messages[0].role" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages[0].content" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400, "messages[0].content[0].type" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", 400, "top_logprobs" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 3}", 400, "n" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task BadRequestGetsAnErrorObject(string path, string body, int status, string? param)
    {
        var (code, json) = await Http.Post(fx.Client, path, body);
        Http.AssertError(code, json, status, param);
        Assert.Equal("invalid_request_error", json.GetProperty("error").GetProperty("type").GetString());
    }

    /// <summary>JSON output and function calling were once accepted and ignored: the client got free text.</summary>
    [Theory]
    [InlineData("\"response_format\": {\"type\": \"json_object\"}", "response_format",
        "'response_format' type 'json_object' is not supported: this server generates free text (leave it out or give {\"type\": \"text\"}).")]
    [InlineData("\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", "tools", "'tools' (function calling) is not supported by this server.")]
    [InlineData("\"functions\": [{\"name\": \"f\"}]", "functions", "'functions' (function calling) is not supported by this server.")]
    public async Task OutputShapingFieldsThisServerCannotHonourAreRefused(string field, string param, string message)
    {
        var (code, json) = await Http.Post(fx.Client, "/v1/chat/completions", $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"x\"}}], {field}}}");
        Http.AssertError(code, json, 400, param);
        Assert.Equal(message, json.GetProperty("error").GetProperty("message").GetString());

        // Asking for nothing is fine.
        var (ok, _) = await Http.Post(fx.Client, "/v1/chat/completions",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 1, \"response_format\": {\"type\": \"text\"}, \"tools\": []}");
        Assert.Equal(200, ok);
    }

    /// <summary>Raw bytes that are not UTF-8 inside a JSON string: once a 500 with a stack trace per request.</summary>
    [Theory]
    [InlineData("prompt")]
    [InlineData("model")]
    [InlineData("user")]
    public async Task InvalidUtf8InAnyStringIs400(string field)
    {
        var head = Encoding.UTF8.GetBytes($"{{\"prompt\":\"x\",\"max_tokens\":1,\"{field}\":\"a");
        byte[] body = [.. (field == "prompt" ? Encoding.UTF8.GetBytes("{\"max_tokens\":1,\"prompt\":\"a") : head), 0xC3, 0x28, 0xFF, .. "\"}"u8];
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = Http.JsonType;
        using var response = await fx.Client.PostAsync("/v1/completions", content);
        using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Http.AssertError((int)response.StatusCode, doc.RootElement, 400, field, "invalid_encoding");
    }

    /// <summary>top_p below the smallest float and temperatures of ~1e-40 both decode greedily (they once gave a 500
    /// and garbage text).</summary>
    [Theory]
    [InlineData("\"top_p\": 1e-46")]
    [InlineData("\"top_p\": 5e-324")]
    [InlineData("\"temperature\": 1e-40")]
    [InlineData("\"temperature\": 1e-45")]
    [InlineData("\"temperature\": 1e-300")]
    public async Task VanishingTopPAndTemperatureAreGreedy(string field)
    {
        const string prompt = "\"prompt\": \"def add(a, b):\", \"max_tokens\": 8";
        var (s0, greedy) = await Http.Post(fx.Client, "/v1/completions", $"{{{prompt}, \"temperature\": 0}}");
        var (s1, tiny) = await Http.Post(fx.Client, "/v1/completions", $"{{{prompt}, {field}, \"seed\": 3}}");
        Assert.Equal((200, 200), (s0, s1));
        Assert.Equal(Text(greedy), Text(tiny));
        static string? Text(JsonElement b) => b.GetProperty("choices")[0].GetProperty("text").GetString();
    }

    [Fact]
    public async Task PromptsLongerThanTheContextAreRefused()
    {
        int context = fx.Model.Context;
        // Text: more words than the context has positions (each word is at least one token).
        string text = string.Join(" ", Enumerable.Range(0, context).Select(i => "w" + i));
        var (s1, b1) = await Http.Post(fx.Client, "/v1/completions", $"{{\"prompt\":\"{text}\",\"max_tokens\":1}}");
        Http.AssertError(s1, b1, 400, "prompt", "context_length_exceeded");
        Assert.Contains(context.ToString(), b1.GetProperty("error").GetProperty("message").GetString());

        // Token ids that fit, but not together with max_tokens.
        string ids = string.Join(",", Enumerable.Repeat(1, context - 10));
        var (s2, b2) = await Http.Post(fx.Client, "/v1/completions", $"{{\"prompt\":[{ids}],\"max_tokens\":20}}");
        Http.AssertError(s2, b2, 400, "max_tokens", "context_length_exceeded");

        string messages = $"{{\"messages\":[{{\"role\":\"user\",\"content\":\"{text}\"}}]}}";
        var (s3, b3) = await Http.Post(fx.Client, "/v1/chat/completions", messages);
        Http.AssertError(s3, b3, 400, "messages", "context_length_exceeded");
    }

    [Fact]
    public async Task OversizedBodiesAreRefusedWith413()
    {
        const int limit = 256 * 1024; // ServerFixture.Options
        // A declared length over the limit is refused before the body is read. The client asks before sending it
        // (Expect: 100-continue), as curl does for large bodies: otherwise the server's close after its 413 can
        // reach the client while it is still writing, which then sees a broken pipe instead of the response.
        string big = "{\"prompt\":\"" + new string('a', limit + 10) + "\"}";
        using var declared = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = Http.Json(big) };
        declared.Headers.ExpectContinue = true;
        using var r1 = await fx.Client.SendAsync(declared);
        using (var b1 = JsonDocument.Parse(await r1.Content.ReadAsStringAsync()))
            Http.AssertError((int)r1.StatusCode, b1.RootElement, 413, null, "request_too_large");

        // Without Content-Length (chunked): the limit holds while the body is read. One byte over the limit, so the
        // refusal comes when the client has written all of it (the same race as above, otherwise).
        using var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(new string('a', limit + 1))));
        content.Headers.ContentType = Http.JsonType;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await fx.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("\"error\"", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task UnknownRoutesAndMethodsGetErrorObjects()
    {
        using var r1 = await fx.Client.GetAsync("/v1/nothing-here");
        Assert.Equal(HttpStatusCode.NotFound, r1.StatusCode);
        Assert.Contains("\"error\"", await r1.Content.ReadAsStringAsync());
        using var r2 = await fx.Client.GetAsync("/v1/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, r2.StatusCode);
        Assert.Contains("\"error\"", await r2.Content.ReadAsStringAsync());
        using var r3 = await fx.Client.PostAsync("/v1/completions", new ByteArrayContent([]));
        Assert.Equal(HttpStatusCode.BadRequest, r3.StatusCode);
    }

    [Fact]
    public async Task UnknownFieldsAreIgnoredAndTheServerStaysHealthy()
    {
        var (status, body) = await Http.Post(fx.Client, "/v1/completions",
            "{\"prompt\":\"x = \",\"max_tokens\":2,\"temperature\":0,\"user\":\"u\",\"presence_penalty\":0,\"logit_bias\":{},\"whatever\":[1,{\"a\":null}]}");
        Assert.Equal(200, status);
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        await Http.WaitIdle(fx.Client, TimeSpan.FromSeconds(10));
    }
}
