using Microsoft.Extensions.AI;
using SparseDecode.Server.Chat;
using SparseDecode.Server.Protocol;

namespace SparseDecode.Tests.Server;

/// <summary>The in-process IChatClient answers as the HTTP server does for the same conversation, streams the same
/// text it returns whole, reports usage and finish reason, and takes a sparse method.</summary>
[Collection("server")]
public class ChatClientTests(ServerFixture fx)
{
    private static readonly Microsoft.Extensions.AI.ChatMessage[] Conversation =
        [new(ChatRole.System, "You write Python."), new(ChatRole.User, "def fibonacci(n):")];

    [Fact]
    public async Task ReplyEqualsTheServersAndTheStreamEqualsTheWholeReply()
    {
        using var client = new SparseChatClient(fx.Model);
        var options = new ChatOptions { MaxOutputTokens = 12, Temperature = 0 };
        var whole = await client.GetResponseAsync(Conversation, options);
        var streamed = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Conversation, options)) streamed.Add(u);

        Assert.NotEqual("", whole.Text);
        Assert.Equal(whole.Text, string.Concat(streamed.Select(u => u.Text)));
        Assert.True(streamed.Count > 2, "the reply arrives in pieces");
        Assert.NotNull(whole.FinishReason);
        var usage = Assert.IsType<UsageDetails>(whole.Usage);
        Assert.InRange(usage.OutputTokenCount ?? 0, 1, 12);
        Assert.Equal(fx.Model.Id, whole.ModelId);

        var (status, body) = await Http.Post(fx.Client, "/v1/chat/completions",
            """{"messages":[{"role":"system","content":"You write Python."},{"role":"user","content":"def fibonacci(n):"}],"max_tokens":12,"temperature":0}""");
        Assert.Equal(200, status);
        Assert.Equal(body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), whole.Text);
    }

    [Fact]
    public async Task SparseMethodAnswersAndABadMethodFailsAtConstruction()
    {
        using var client = new SparseChatClient(fx.Model, "lfps", "5%");
        var reply = await client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 4 });
        Assert.InRange(reply.Usage!.OutputTokenCount ?? 0, 1, 4);
        Assert.ThrowsAny<ArgumentException>(() => new SparseChatClient(fx.Model, "nope"));
        Assert.Same(client, client.GetService(typeof(IChatClient)));
    }
}
