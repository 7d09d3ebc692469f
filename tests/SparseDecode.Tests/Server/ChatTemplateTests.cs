using SparseDecode.Server.Chat;
using SparseDecode.Server.Protocol;
using SparseDecode.Server.Scheduling;
using Xunit;
using SparseDecode.Server.Serving;

namespace SparseDecode.Tests.Server;

/// <summary>Chat formats recognized from hand-written chat_template strings (as tokenizer_config.json holds them:
/// a Jinja "\n" escape is a backslash and an n) and rendered to exactly what transformers' apply_chat_template
/// gives for those templates with add_generation_prompt=True.</summary>
public class ChatTemplateTests
{
    private const string Llama3Template =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    private const string QwenTemplate =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private const string ChatMlTemplate =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private const string MistralTemplate =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    [Theory]
    [InlineData(Llama3Template, ChatFormat.Llama3)]
    [InlineData(QwenTemplate, ChatFormat.ChatMl)]
    [InlineData(ChatMlTemplate, ChatFormat.ChatMl)]
    [InlineData(MistralTemplate, ChatFormat.Mistral)]
    [InlineData("{{ messages[0]['content'] }}", ChatFormat.Plain)]
    [InlineData("", ChatFormat.Plain)]
    [InlineData(null, ChatFormat.Plain)]
    public void FormatIsRecognizedFromTheTemplate(string? template, ChatFormat format) =>
        Assert.Equal(format, ChatTemplate.Detect(template));

    [Fact]
    public void Llama3()
    {
        var t = ChatTemplate.FromTemplateString(Llama3Template, "<|begin_of_text|>", "<|end_of_text|>");
        string text = t.Render([new("system", "Be brief."), new("user", "  Hi there \n"), new("assistant", "Hello."), new("user", "Sum 2+2?")]);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>" +
            "<|start_header_id|>user<|end_header_id|>\n\nSum 2+2?<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n", text);
        Assert.Equal("<|eot_id|>", t.EndOfTurn);
        Assert.False(t.EncodeWithSpecialTokens);
    }

    [Fact]
    public void QwenChatMlAddsItsDefaultSystemMessage()
    {
        var t = ChatTemplate.FromTemplateString(QwenTemplate, null, "<|im_end|>");
        Assert.Equal("You are a helpful assistant.", t.DefaultSystem);
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            t.Render([new("user", "Hi")]));
        Assert.Equal(
            "<|im_start|>system\nTerse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHey<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
            t.Render([new("system", "Terse."), new("user", "Hi"), new("assistant", "Hey"), new("user", "Bye")]));
        Assert.Equal("<|im_end|>", t.EndOfTurn);
    }

    [Fact]
    public void PlainChatMlHasNoDefaultSystemMessage()
    {
        var t = ChatTemplate.FromTemplateString(ChatMlTemplate, null, null);
        Assert.Null(t.DefaultSystem);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", t.Render([new("user", "Hi")]));
    }

    [Fact]
    public void Mistral()
    {
        var t = ChatTemplate.FromTemplateString(MistralTemplate, "<s>", "</s>");
        Assert.Equal("<s>[INST] Hi [/INST]Hello</s>[INST] How are you? [/INST]",
            t.Render([new("user", "Hi"), new("assistant", "Hello"), new("user", "How are you?")]));
        // A system message goes before the first user message.
        Assert.Equal("<s>[INST] Be brief.\n\nHi [/INST]", t.Render([new("system", "Be brief."), new("user", "Hi")]));
        Assert.Equal("</s>", t.EndOfTurn);
        var e = Assert.Throws<ApiException>(() => t.Render([new("user", "a"), new("user", "b")]));
        Assert.Equal(400, e.Status);
        Assert.Equal("messages[1].role", e.Param);
        Assert.Throws<ApiException>(() => t.Render([new("user", "a"), new("assistant", "b")]));
    }

    [Fact]
    public void PlainFallbackForModelsWithoutATemplate()
    {
        var t = ChatTemplate.FromTemplateString(null, "<|endoftext|>", "<|endoftext|>");
        Assert.Equal(ChatFormat.Plain, t.Format);
        Assert.Equal("System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Bye\n\nAssistant:",
            t.Render([new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello"), new("user", "Bye")]));
        Assert.True(t.EncodeWithSpecialTokens);
        Assert.Equal(["\n\nUser:"], t.StopStrings);
        Assert.Null(t.EndOfTurn);
    }
}

/// <summary>Stop strings over streamed pieces: held back while they might begin one, cut before the first match.</summary>
public class StopMatcherTests
{
    [Fact]
    public void StopStringSplitAcrossPiecesIsNeverSent()
    {
        var m = new StopMatcher(["\n\nUser:"]);
        Assert.Equal("Hello", m.Push("Hello\n"));
        Assert.Equal("", m.Push("\nUs"));
        Assert.False(m.Stopped);
        Assert.Equal("", m.Push("er: more"));
        Assert.True(m.Stopped);
        Assert.Equal("", m.Push("anything"));
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void HeldTextIsReleasedWhenItTurnsOutNotToBeAStop()
    {
        var m = new StopMatcher(["END", "\n\n"]);
        Assert.Equal("ab", m.Push("abE"));
        Assert.Equal("Exy", m.Push("xy"));
        Assert.Equal("", m.Push("\n"));
        Assert.Equal("\nq", m.Push("q"));
        Assert.Equal("zE", m.Push("zE") + m.Flush());
    }

    [Fact]
    public void EarliestStopWins()
    {
        var m = new StopMatcher(["cd", "b"]);
        Assert.Equal("a", m.Push("abcd"));
        Assert.True(m.Stopped);
    }

    [Fact]
    public void NoStopsPassTextThrough()
    {
        var m = new StopMatcher([]);
        Assert.Equal("x", m.Push("x"));
        Assert.Equal("", m.Flush());
    }
}
