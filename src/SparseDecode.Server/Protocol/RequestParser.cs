using System.Globalization;
using System.Text.Json;
using SparseDecode.Server.Chat;
using SparseDecode.Cpu;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Server.Protocol;

/// <summary>Reads the JSON bodies of /v1/completions and /v1/chat/completions by hand (JsonDocument: no
/// reflection, and every field of the wrong type or out of range gets a message naming it). Fields this server
/// does not know are ignored, as OpenAI-compatible servers do, so that clients may send their usual extras.</summary>
public static class RequestParser
{
    public const int MaxStopStrings = 4;
    /// <summary>Longest stop string: text that may begin one is held back and rescanned on every token (on the
    /// scheduler thread that serves every sequence), so a megabyte-long stop string would stall all of them.</summary>
    public const int MaxStopLength = 256;
    public const int MaxCompletionLogprobs = 5;
    public const int MaxChatTopLogprobs = 20;

    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 32 };

    public static CompletionRequest ParseCompletion(ReadOnlyMemory<byte> body, int maxTokensLimit)
    {
        using var doc = Open(body);
        var root = doc.RootElement;
        // echo with max_tokens 0 scores the prompt (lm-evaluation-harness's log-likelihoods); nothing is generated
        bool echo = Bool(root, "echo") ?? false;
        var p = Common(root, maxTokensLimit, minTokens: echo ? 0 : 1);
        if (root.TryGetProperty("logprobs", out var lp) && lp.ValueKind != JsonValueKind.Null)
            p = p with { Logprobs = IntIn(lp, "logprobs", 0, MaxCompletionLogprobs) };
        if (echo && p.MaxTokens != 0)
            throw ApiException.BadRequest("'echo' is supported with 'max_tokens': 0 (the prompt scored, nothing generated).", "echo");
        if (echo && p.Stream) throw ApiException.BadRequest("'echo' with 'max_tokens': 0 returns one response; set 'stream' to false.", "stream");
        if (!root.TryGetProperty("prompt", out var prompt) || prompt.ValueKind == JsonValueKind.Null)
            throw ApiException.BadRequest("'prompt' is required.", "prompt");
        return prompt.ValueKind switch
        {
            JsonValueKind.String => new CompletionRequest(prompt.GetString()!, null, p),
            JsonValueKind.Array => PromptArray(prompt, p),
            _ => throw ApiException.BadRequest("'prompt' must be a string, an array of token ids, or an array holding one of those.", "prompt"),
        } with { Echo = echo };
    }

    private static CompletionRequest PromptArray(JsonElement prompt, GenerationParameters p)
    {
        int n = prompt.GetArrayLength();
        if (n == 0) throw ApiException.BadRequest("'prompt' must not be empty.", "prompt");
        var first = prompt[0];
        if (first.ValueKind == JsonValueKind.Number) return new CompletionRequest(null, TokenIds(prompt, "prompt"), p);
        if (n > 1) throw ApiException.BadRequest("This server takes one prompt per request; 'prompt' holds " + n + ".", "prompt");
        return first.ValueKind switch
        {
            JsonValueKind.String => new CompletionRequest(first.GetString()!, null, p),
            JsonValueKind.Array => new CompletionRequest(null, TokenIds(first, "prompt[0]"), p),
            _ => throw ApiException.BadRequest("'prompt' must be a string, an array of token ids, or an array holding one of those.", "prompt"),
        };
    }

    private static int[] TokenIds(JsonElement array, string name)
    {
        var ids = new int[array.GetArrayLength()];
        int i = 0;
        foreach (var e in array.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id) || id < 0)
                throw ApiException.BadRequest($"'{name}' must hold non-negative integer token ids; element {i} is not one.", name);
            ids[i++] = id;
        }
        if (ids.Length == 0) throw ApiException.BadRequest($"'{name}' must not be empty.", name);
        return ids;
    }

    public static ChatRequest ParseChat(ReadOnlyMemory<byte> body, int maxTokensLimit)
    {
        using var doc = Open(body);
        var root = doc.RootElement;
        var p = Common(root, maxTokensLimit);
        bool logprobs = Bool(root, "logprobs") ?? false;
        int? top = root.TryGetProperty("top_logprobs", out var tl) && tl.ValueKind != JsonValueKind.Null
            ? IntIn(tl, "top_logprobs", 0, MaxChatTopLogprobs) : null;
        if (top is not null && !logprobs) throw ApiException.BadRequest("'top_logprobs' needs 'logprobs' set to true.", "top_logprobs");
        if (logprobs) p = p with { Logprobs = top ?? 0 };

        if (!root.TryGetProperty("messages", out var msgs) || msgs.ValueKind == JsonValueKind.Null)
            throw ApiException.BadRequest("'messages' is required.", "messages");
        if (msgs.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest("'messages' must be an array.", "messages");
        if (msgs.GetArrayLength() == 0) throw ApiException.BadRequest("'messages' must contain at least one message.", "messages");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (var m in msgs.EnumerateArray())
        {
            string at = $"messages[{i}]";
            if (m.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{at}' must be an object.", at);
            string role = String(m, "role", at + ".role") ?? throw ApiException.BadRequest($"'{at}.role' is required.", at + ".role");
            role = role switch
            {
                "system" or "developer" => "system",
                "user" or "assistant" => role,
                _ => throw ApiException.BadRequest($"'{at}.role' is '{role}'; this server takes system, developer, user and assistant messages.", at + ".role"),
            };
            list.Add(new ChatMessage(role, Content(m, at)));
            i++;
        }
        return new ChatRequest(list, p);
    }

    private static string Content(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var c) || c.ValueKind == JsonValueKind.Null) return "";
        if (c.ValueKind == JsonValueKind.String) return c.GetString()!;
        if (c.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"'{at}.content' must be a string or an array of text parts.", at + ".content");
        var text = new System.Text.StringBuilder();
        int j = 0;
        foreach (var part in c.EnumerateArray())
        {
            string pat = $"{at}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest($"'{pat}' must be an object.", pat);
            string type = String(part, "type", pat + ".type") ?? "text";
            if (type != "text") throw ApiException.BadRequest($"'{pat}.type' is '{type}'; this server takes only text parts.", pat + ".type");
            text.Append(String(part, "text", pat + ".text") ?? "");
        }
        return text.ToString();
    }

    private static JsonDocument Open(ReadOnlyMemory<byte> body)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw new ApiException(400, "The request body is not valid JSON: " + e.Message, null, "invalid_json");
        }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw new ApiException(400, "The request body must be a JSON object.", null, "invalid_json");
        }
        try
        {
            CheckText(body.Span);
        }
        catch
        {
            doc.Dispose();
            throw;
        }
        return doc;
    }

    /// <summary>Invalid UTF-8 or a lone surrogate in any string would fail later deep in a handler or the
    /// tokenizer; refused up front, naming the top-level field it is in.</summary>
    private static void CheckText(ReadOnlySpan<byte> body)
    {
        if (JsonText.FirstInvalid(body, DocumentOptions.MaxDepth) is not string property) return;
        throw new ApiException(400, $"The request body holds a string that is not valid Unicode (invalid UTF-8 or a lone surrogate){(property.Length == 0 ? "" : $" at '{property}'")}.",
            property.Length == 0 ? null : property, "invalid_encoding");
    }

    /// <summary>Fields a client relies on to shape the answer (JSON output, function calls): ignoring them would hand it
    /// free text it takes for what it asked, so they are refused unless they ask for nothing.</summary>
    private static void Unsupported(JsonElement root)
    {
        if (root.TryGetProperty("response_format", out var format) && format.ValueKind != JsonValueKind.Null)
        {
            if (format.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("'response_format' must be an object such as {\"type\": \"text\"}.", "response_format");
            string type = String(format, "type", "response_format.type") ?? "text";
            if (type != "text")
                throw ApiException.BadRequest($"'response_format' type '{type}' is not supported: this server generates free text (leave it out or give {{\"type\": \"text\"}}).", "response_format");
        }
        foreach (string name in (ReadOnlySpan<string>)["tools", "functions"])
            if (root.TryGetProperty(name, out var tools) && tools.ValueKind != JsonValueKind.Null
                && !(tools.ValueKind == JsonValueKind.Array && tools.GetArrayLength() == 0))
                throw ApiException.BadRequest($"'{name}' (function calling) is not supported by this server.", name);
    }

    private static GenerationParameters Common(JsonElement root, int maxTokensLimit, int minTokens = 1)
    {
        String(root, "model", "model");
        int? n = Int(root, "n");
        if (n is not null && n != 1) throw ApiException.BadRequest($"'n' must be 1: this server returns one choice per request (got {n}).", "n");
        if (Int(root, "best_of") is int bo && bo != 1) throw ApiException.BadRequest("'best_of' must be 1.", "best_of");
        Unsupported(root);
        // max_completion_tokens is the newer name of the same limit in the chat API.
        string maxName = root.TryGetProperty("max_tokens", out var mtv) && mtv.ValueKind != JsonValueKind.Null ? "max_tokens" : "max_completion_tokens";
        int? maxTokens = Int(root, maxName);
        if (maxTokens is int mt && (mt < minTokens || mt > maxTokensLimit))
            throw ApiException.BadRequest($"'{maxName}' must be between {minTokens} and {maxTokensLimit}, got {mt}.", maxName);
        double temperature = Number(root, "temperature") ?? 1.0;
        if (!(temperature >= 0 && temperature <= 2)) throw ApiException.BadRequest($"'temperature' must be between 0 and 2, got {F(temperature)}.", "temperature");
        double topP = Number(root, "top_p") ?? 1.0;
        if (!(topP >= 0 && topP <= 1)) throw ApiException.BadRequest($"'top_p' must be between 0 and 1, got {F(topP)}.", "top_p");
        int topK = Int(root, "top_k") ?? 0;
        if (topK < -1) throw ApiException.BadRequest($"'top_k' must be ≥ 0 (or -1 for off), got {topK}.", "top_k");
        float presence = Penalty(root, "presence_penalty"), frequency = Penalty(root, "frequency_penalty");
        ulong? seed = null;
        if (root.TryGetProperty("seed", out var s) && s.ValueKind != JsonValueKind.Null)
        {
            if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt64(out long sv))
                throw ApiException.BadRequest("'seed' must be an integer.", "seed");
            seed = unchecked((ulong)sv);
        }
        bool stream = Bool(root, "stream") ?? false;
        bool includeUsage = false;
        if (root.TryGetProperty("stream_options", out var so) && so.ValueKind != JsonValueKind.Null)
        {
            if (so.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("'stream_options' must be an object.", "stream_options");
            includeUsage = Bool(so, "include_usage", "stream_options.include_usage") ?? false;
        }
        // top_p 0 keeps only the most likely token: greedy. So does any top_p too small for a float (≤ ~1e-45),
        // which would otherwise reach the sampler as 0 and be refused there.
        if ((float)topP == 0) temperature = 0;
        return new GenerationParameters
        {
            MaxTokens = maxTokens,
            Temperature = (float)temperature,
            TopP = (float)topP == 0 ? 1f : (float)topP,
            TopK = Math.Max(0, topK),
            Seed = seed,
            PresencePenalty = presence,
            FrequencyPenalty = frequency,
            LogitBias = LogitBias(root),
            Stop = Stop(root),
            Stream = stream,
            IncludeUsage = includeUsage,
            Sparse = Sparse(root),
            IgnoreEos = Bool(root, "ignore_eos") ?? false,
        };
    }

    /// <summary>A penalty field: a number in [−2, 2], 0 when absent or null.</summary>
    private static float Penalty(JsonElement root, string name) => Number(root, name) switch
    {
        null => 0f,
        double v when v >= -2 && v <= 2 => (float)v,
        double v => throw ApiException.BadRequest($"'{name}' must be between -2 and 2, got {F(v)}.", name),
    };

    /// <summary>The most tokens one request's logit_bias may name.</summary>
    public const int MaxLogitBias = 1024;

    /// <summary>`logit_bias`: an object from token ids (as strings) to numbers in [−100, 100]; null when absent, null or
    /// empty. Whether the ids lie in the vocabulary is checked against the model when the request is submitted.</summary>
    private static IReadOnlyDictionary<int, float>? LogitBias(JsonElement root)
    {
        if (!root.TryGetProperty("logit_bias", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("'logit_bias' must be an object from token ids to numbers between -100 and 100.", "logit_bias");
        var bias = new Dictionary<int, float>();
        foreach (var e in v.EnumerateObject())
        {
            if (bias.Count == MaxLogitBias) throw ApiException.BadRequest($"'logit_bias' may name at most {MaxLogitBias} tokens.", "logit_bias");
            if (!int.TryParse(e.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int token))
                throw ApiException.BadRequest($"'logit_bias' keys must be token ids (integers ≥ 0 as strings), got '{(e.Name.Length <= 40 ? e.Name : e.Name[..40] + "…")}'.", "logit_bias");
            if (e.Value.ValueKind != JsonValueKind.Number || !(e.Value.GetDouble() is var b && b >= -100 && b <= 100))
                throw ApiException.BadRequest($"'logit_bias' of token {token} must be a number between -100 and 100, got {Shown(e.Value)}.", "logit_bias");
            bias[token] = (float)e.Value.GetDouble();
        }
        return bias.Count == 0 ? null : bias;
    }

    private static IReadOnlyList<string> Stop(JsonElement root)
    {
        if (!root.TryGetProperty("stop", out var stop) || stop.ValueKind == JsonValueKind.Null) return [];
        if (stop.ValueKind == JsonValueKind.String)
            return stop.GetString()!.Length == 0 ? [] : [StopString(stop)];
        if (stop.ValueKind != JsonValueKind.Array) throw ApiException.BadRequest("'stop' must be a string or an array of strings.", "stop");
        if (stop.GetArrayLength() > MaxStopStrings)
            throw ApiException.BadRequest($"'stop' may hold at most {MaxStopStrings} strings.", "stop");
        var list = new List<string>();
        foreach (var e in stop.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.String) throw ApiException.BadRequest("'stop' must be a string or an array of strings.", "stop");
            if (e.GetString()!.Length > 0) list.Add(StopString(e));
        }
        return list;
    }

    private static string StopString(JsonElement e)
    {
        string s = e.GetString()!;
        if (s.Length > MaxStopLength)
            throw ApiException.BadRequest($"Each 'stop' string may hold at most {MaxStopLength} characters; one holds {s.Length}.", "stop");
        return s;
    }

    private static SparseRequest? Sparse(JsonElement root)
    {
        if (!root.TryGetProperty("sparse", out var sp) || sp.ValueKind == JsonValueKind.Null) return null;
        if (sp.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("'sparse' must be an object like {\"method\": \"quest\", \"budget\": 256, \"params\": {}}.", "sparse");
        string? method = String(sp, "method", "sparse.method");
        string? budget = null;
        if (sp.TryGetProperty("budget", out var b) && b.ValueKind != JsonValueKind.Null)
            budget = b.ValueKind switch
            {
                JsonValueKind.String => b.GetString(),
                JsonValueKind.Number => b.GetRawText(),
                _ => throw ApiException.BadRequest("'sparse.budget' must be a number of tokens or a string like \"3%\".", "sparse.budget"),
            };
        Dictionary<string, string>? parameters = null;
        if (sp.TryGetProperty("params", out var ps) && ps.ValueKind != JsonValueKind.Null)
        {
            if (ps.ValueKind != JsonValueKind.Object) throw ApiException.BadRequest("'sparse.params' must be an object of name: value.", "sparse.params");
            parameters = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var prop in ps.EnumerateObject())
                parameters[prop.Name] = prop.Value.ValueKind switch
                {
                    JsonValueKind.String => prop.Value.GetString()!,
                    JsonValueKind.Number => prop.Value.GetRawText(),
                    JsonValueKind.True => "true",
                    JsonValueKind.False => "false",
                    _ => throw ApiException.BadRequest($"'sparse.params.{prop.Name}' must be a string, number or boolean.", "sparse.params." + prop.Name),
                };
        }
        return new SparseRequest(method, budget, parameters, Speculate(sp));
    }

    /// <summary>`sparse.speculate`: a number of draft tokens per verification pass from 1 to
    /// <see cref="SpeculationOptions.MaxDraft"/>, or "auto" (null: absent or null).</summary>
    private static SpeculationOptions? Speculate(JsonElement sparse)
    {
        if (!sparse.TryGetProperty("speculate", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        string? text = v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Number => v.GetRawText(),
            _ => null,
        };
        try
        {
            if (text is not null) return SpeculationOptions.Parse(text);
        }
        catch (ArgumentException)
        {
            // the sentence below names the field and the value as sent
        }
        throw ApiException.BadRequest($"'sparse.speculate' must be a number of draft tokens from 1 to {SpeculationOptions.MaxDraft} or \"auto\", got {Shown(v)}.",
            "sparse.speculate", "invalid_sparse");
    }

    /// <summary>A JSON value as a message quotes it, cut short where long.</summary>
    private static string Shown(JsonElement v)
    {
        string raw = v.GetRawText();
        return raw.Length <= 40 ? raw : raw[..40] + "…";
    }

    // ---------------------------------------------------------------- typed field readers (null: absent or null)

    private static int? Int(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw ApiException.BadRequest($"'{name}' must be an integer.", name);
        if (v.TryGetInt32(out int i)) return i;
        // Integral but beyond int: out of range rather than the wrong type.
        if (v.TryGetInt64(out long l)) return l > 0 ? int.MaxValue : int.MinValue;
        throw ApiException.BadRequest($"'{name}' must be an integer.", name);
    }

    private static int IntIn(JsonElement v, string name, int min, int max)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i))
            throw ApiException.BadRequest($"'{name}' must be an integer between {min} and {max}.", name);
        if (i < min || i > max) throw ApiException.BadRequest($"'{name}' must be between {min} and {max}, got {i}.", name);
        return i;
    }

    private static double? Number(JsonElement obj, string name)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw ApiException.BadRequest($"'{name}' must be a number.", name);
        return v.GetDouble();
    }

    private static bool? Bool(JsonElement obj, string name, string? path = null)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadRequest($"'{path ?? name}' must be true or false.", path ?? name),
        };
    }

    private static string? String(JsonElement obj, string name, string path)
    {
        if (!obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw ApiException.BadRequest($"'{path}' must be a string.", path);
        return v.GetString();
    }

    private static string F(double x) => x.ToString("G6", CultureInfo.InvariantCulture);
}
