using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>The parts of transformers' tokenizer_config.json the engine needs: the names of the begin and end
/// of sequence tokens, and the chat template.</summary>
internal sealed record TokenizerConfig(string? BosToken, string? EosToken, string? ChatTemplate, string? Path = null)
{
    public static readonly TokenizerConfig Empty = new(null, null, null);

    public static TokenizerConfig Load(string path)
    {
        var json = new JsonFields(path);
        try
        {
            var bytes = File.ReadAllBytes(path);
            using var doc = JsonDocument.Parse(bytes);
            if (JsonText.FirstInvalid(bytes, 64) is string at)
                throw new TokenizerFormatException($"{path}: holds a string that is not valid UTF-8 or has a lone surrogate{JsonText.Where(at)}.");
            var root = doc.RootElement;
            json.RequireObject(root, "the top level");
            return new TokenizerConfig(TokenName(root, "bos_token", json), TokenName(root, "eos_token", json), Template(root, json), path);
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException($"{path}: not valid JSON ({e.Message.TrimEnd('.')}).", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerFormatException($"{path}: cannot be read ({e.Message.TrimEnd('.')}).", e);
        }
    }

    /// <summary>A token is stored as a plain string or as a serialized AddedToken {"content": ...}.</summary>
    static string? TokenName(JsonElement root, string name, JsonFields json)
    {
        var v = JsonFields.Get(root, name);
        return v.ValueKind switch
        {
            JsonValueKind.Null or JsonValueKind.Undefined => null,
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object => json.RequireString(v, "content", name),
            _ => throw json.Error($"{name} must be a string, an object with \"content\", or null"),
        };
    }

    /// <summary>The template string; of the list form [{"name", "template"}], the one named "default".</summary>
    static string? Template(JsonElement root, JsonFields json)
    {
        var v = JsonFields.Get(root, "chat_template");
        switch (v.ValueKind)
        {
            case JsonValueKind.Null or JsonValueKind.Undefined:
                return null;
            case JsonValueKind.String:
                return v.GetString();
            case JsonValueKind.Array:
                foreach (var entry in v.EnumerateArray())
                {
                    if (entry.ValueKind == JsonValueKind.Object && json.OptionalString(entry, "name", "chat_template[]") == "default")
                        return json.RequireString(entry, "template", "chat_template[default]");
                }
                return null;
            default:
                throw json.Error("chat_template must be a string, a list of named templates, or null");
        }
    }
}
