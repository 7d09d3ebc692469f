using System.Text;
using System.Text.RegularExpressions;
using SparseDecode.Server.Protocol;

namespace SparseDecode.Server.Serving;

/// <summary>Turns a conversation into prompt text in the model's chat format. The format is recognized from the
/// Jinja chat_template string of tokenizer_config.json by the markers each family uses (no Jinja is run):
/// Llama-3 (&lt;|start_header_id|&gt;), ChatML as Qwen uses it (&lt;|im_start|&gt;) and Mistral ([INST]).
/// Without a template, or with one that matches none of them, the plain format is used:
/// <code>
/// System: {system}\n\nUser: {user}\n\nAssistant: {assistant}\n\nUser: {user}\n\nAssistant:
/// </code>
/// and "\n\nUser:" becomes a stop string so that the model does not write the user's next turn.</summary>
public sealed partial class ChatTemplate
{
    public ChatFormat Format { get; }
    public string BosToken { get; }
    public string EosToken { get; }
    /// <summary>System message a ChatML template inserts when the conversation has none (Qwen does).</summary>
    public string? DefaultSystem { get; }

    public ChatTemplate(ChatFormat format, string bosToken = "", string eosToken = "", string? defaultSystem = null)
    {
        Format = format;
        BosToken = bosToken;
        EosToken = eosToken;
        DefaultSystem = defaultSystem;
    }

    /// <summary>Recognizes the format of a chat_template string (null: no template).</summary>
    public static ChatTemplate FromTemplateString(string? template, string? bosToken, string? eosToken)
    {
        var format = Detect(template);
        string? defaultSystem = null;
        if (format == ChatFormat.ChatMl && template is not null)
        {
            var m = DefaultSystemPattern().Match(template);
            if (m.Success) defaultSystem = m.Groups[1].Value;
        }
        return new ChatTemplate(format, bosToken ?? "", eosToken ?? "", defaultSystem);
    }

    public static ChatFormat Detect(string? template)
    {
        if (string.IsNullOrEmpty(template)) return ChatFormat.Plain;
        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal)) return ChatFormat.Llama3;
        if (template.Contains("<|im_start|>", StringComparison.Ordinal)) return ChatFormat.ChatMl;
        if (template.Contains("[INST]", StringComparison.Ordinal)) return ChatFormat.Mistral;
        return ChatFormat.Plain;
    }

    // A literal default system turn inside the template, e.g. '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
    // (the \n is the two characters of a Jinja escape). Only plain text qualifies: no quotes or Jinja expressions.
    [GeneratedRegex(@"<\|im_start\|>system\\n([^'""{}<>\\]+)<\|im_end\|>")]
    private static partial Regex DefaultSystemPattern();

    /// <summary>The end-of-turn marker of the format: generation stops when the model emits it.</summary>
    public string? EndOfTurn => Format switch
    {
        ChatFormat.Llama3 => "<|eot_id|>",
        ChatFormat.ChatMl => "<|im_end|>",
        ChatFormat.Mistral => EosToken.Length > 0 ? EosToken : null,
        _ => null,
    };

    /// <summary>Stop strings the format adds to the request's own.</summary>
    public IReadOnlyList<string> StopStrings => Format == ChatFormat.Plain ? ["\n\nUser:"] : [];

    /// <summary>Whether the rendered text is encoded with the tokenizer's special tokens added (BOS): the plain
    /// format is ordinary text; the templated ones carry their special tokens (BOS included) as text, as
    /// transformers' apply_chat_template renders them.</summary>
    public bool EncodeWithSpecialTokens => Format == ChatFormat.Plain;

    /// <summary>The prompt text for the conversation, ending where the assistant's reply begins.</summary>
    public string Render(IReadOnlyList<ChatMessage> messages)
    {
        if (messages.Count == 0) throw ApiException.BadRequest("'messages' must contain at least one message.", "messages");
        return Format switch
        {
            ChatFormat.Llama3 => RenderLlama3(messages),
            ChatFormat.ChatMl => RenderChatMl(messages),
            ChatFormat.Mistral => RenderMistral(messages),
            _ => RenderPlain(messages),
        };
    }

    private string RenderLlama3(IReadOnlyList<ChatMessage> messages)
    {
        // Meta's template: bos, then per message a header, the trimmed content and <|eot_id|>; then the assistant header.
        var sb = new StringBuilder(BosToken.Length > 0 ? BosToken : "<|begin_of_text|>");
        foreach (var m in messages)
            sb.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(m.Content.Trim()).Append("<|eot_id|>");
        return sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n").ToString();
    }

    private string RenderChatMl(IReadOnlyList<ChatMessage> messages)
    {
        var sb = new StringBuilder();
        if (messages[0].Role != "system" && DefaultSystem is not null)
            sb.Append("<|im_start|>system\n").Append(DefaultSystem).Append("<|im_end|>\n");
        foreach (var m in messages)
            sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
        return sb.Append("<|im_start|>assistant\n").ToString();
    }

    private string RenderMistral(IReadOnlyList<ChatMessage> messages)
    {
        // Mistral-7B-Instruct's template: <s>[INST] user [/INST]assistant</s>[INST] user [/INST]; a system message
        // is put before the first user message; roles must alternate user/assistant, starting with user.
        string? system = null;
        int start = 0;
        if (messages[0].Role == "system")
        {
            system = messages[0].Content;
            start = 1;
        }
        var sb = new StringBuilder(BosToken.Length > 0 ? BosToken : "<s>");
        for (int i = start; i < messages.Count; i++)
        {
            var m = messages[i];
            string expected = (i - start) % 2 == 0 ? "user" : "assistant";
            if (m.Role != expected)
                throw ApiException.BadRequest("This model's chat format needs the roles to alternate user/assistant/user/... " +
                                              "after an optional first system message.", $"messages[{i}].role");
            if (m.Role == "user")
            {
                string content = system is not null && i == start ? system + "\n\n" + m.Content : m.Content;
                sb.Append("[INST] ").Append(content).Append(" [/INST]");
            }
            else sb.Append(m.Content).Append(EosToken.Length > 0 ? EosToken : "</s>");
        }
        if (messages[^1].Role != "user")
            throw ApiException.BadRequest("This model's chat format needs the last message to come from the user.", "messages");
        return sb.ToString();
    }

    private string RenderPlain(IReadOnlyList<ChatMessage> messages)
    {
        var sb = new StringBuilder();
        foreach (var m in messages)
        {
            string label = m.Role switch { "system" => "System", "assistant" => "Assistant", _ => "User" };
            sb.Append(label).Append(": ").Append(m.Content.Trim()).Append("\n\n");
        }
        return sb.Append("Assistant:").ToString();
    }
}
