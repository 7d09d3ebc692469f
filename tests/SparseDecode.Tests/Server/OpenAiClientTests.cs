using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;

namespace SparseDecode.Tests.Server;

/// <summary>The official OpenAI .NET library against the real server: chat whole and streamed, the model list, an
/// error as the library surfaces it, and /v1/completions through the library's own pipeline (the library has no
/// typed client for the legacy completions endpoint).</summary>
[Collection("server")]
public class OpenAiClientTests(ServerFixture fx)
{
    private OpenAIClient Client() => new(new ApiKeyCredential("unused"), new OpenAIClientOptions
    {
        Endpoint = new Uri(fx.Server.BaseAddress, "v1/"),
        NetworkTimeout = TimeSpan.FromSeconds(60),
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
    });

    private static readonly ChatMessage[] Conversation = [new SystemChatMessage("You write Python."), new UserChatMessage("def fibonacci(n):")];

    [Fact]
    public async Task ChatWholeAndStreamedAgree()
    {
        var chat = Client().GetChatClient(fx.Model.Id);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 };
        ChatCompletion whole = await chat.CompleteChatAsync(Conversation, options);
        Assert.Equal(ChatMessageRole.Assistant, whole.Role);
        Assert.NotEqual("", whole.Content[0].Text);
        Assert.InRange(whole.Usage.OutputTokenCount, 1, 12);
        Assert.True(whole.Usage.InputTokenCount > 0);

        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (var u in chat.CompleteChatStreamingAsync(Conversation, options))
        {
            updates++;
            foreach (var part in u.ContentUpdate) text.Append(part.Text);
            finish ??= u.FinishReason;
        }
        Assert.True(updates > 2, "streamed in pieces");
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);
    }

    [Fact]
    public async Task ModelsListTheServedModel()
    {
        var models = await Client().GetOpenAIModelClient().GetModelsAsync();
        Assert.Contains(models.Value, m => m.Id == fx.Model.Id);
    }

    [Fact]
    public async Task AnErrorReachesTheClientWithStatusAndMessage()
    {
        var chat = Client().GetChatClient(fx.Model.Id);
        var e = await Assert.ThrowsAsync<ClientResultException>(() =>
            chat.CompleteChatAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 1_000_000 }));
        Assert.Equal(400, e.Status);
        Assert.Contains("max_completion_tokens", e.Message); // the field the client sent
    }

    [Fact]
    public async Task CompletionThroughTheLibrarysPipelineWholeAndStreamed()
    {
        var client = Client();
        var pipeline = client.GetChatClient(fx.Model.Id).Pipeline;
        async Task<string> Post(string json)
        {
            using var message = pipeline.CreateMessage();
            message.Request.Method = "POST";
            message.Request.Uri = new Uri(fx.Server.BaseAddress, "v1/completions");
            message.Request.Headers.Set("Content-Type", "application/json");
            message.Request.Content = BinaryContent.Create(BinaryData.FromString(json));
            await pipeline.SendAsync(message);
            Assert.Equal(200, message.Response!.Status);
            return message.Response.Content.ToString();
        }
        string prompt = JsonSerializer.Serialize("def fibonacci(n):");
        using var whole = JsonDocument.Parse(await Post($$"""{"model":"{{fx.Model.Id}}","prompt":{{prompt}},"max_tokens":10,"temperature":0}"""));
        string text = whole.RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.NotEqual("", text);

        string events = await Post($$"""{"model":"{{fx.Model.Id}}","prompt":{{prompt}},"max_tokens":10,"temperature":0,"stream":true}""");
        var pieces = events.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(text, string.Concat(pieces));
        Assert.Contains("data: [DONE]", events);
    }
}
