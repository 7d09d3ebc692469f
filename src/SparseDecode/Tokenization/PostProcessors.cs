using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>A tokenizer.json post-processor, reduced to what a single sequence needs: the ids to put around it
/// when special tokens are requested.</summary>
internal interface IPostProcessor
{
    /// <summary>Appends the final ids of one sequence to <paramref name="output"/>.</summary>
    void Process(List<int> sequence, bool addSpecialTokens, List<int> output);

    /// <summary>The ids it adds, each with where the file gives it, so that the loader can check them against the
    /// vocabulary.</summary>
    IEnumerable<(string Where, int Id)> SpecialIds { get; }
}

internal static class PostProcessors
{
    public static IPostProcessor? Parse(JsonElement e, string where, JsonFields json)
    {
        if (JsonFields.IsNull(e)) return null;
        string type = json.TypeOf(e, where);
        switch (type)
        {
            case "Sequence":
            {
                var items = json.RequireArray(e, "processors", where);
                var list = new IPostProcessor[items.GetArrayLength()];
                int i = 0;
                foreach (var item in items.EnumerateArray())
                {
                    string at = $"{where}.processors[{i}]";
                    list[i++] = Parse(item, at, json) ?? throw json.Error($"{at} must not be null");
                }
                return new SequencePostProcessor(list);
            }
            case "ByteLevel":
                // Only trims offsets, which this tokenizer does not report.
                return new NoOpPostProcessor();
            case "TemplateProcessing":
                return TemplatePostProcessor.Parse(e, where, json);
            case "BertProcessing" or "RobertaProcessing":
            {
                int cls = SpecialPair(e, "cls", where, json), sep = SpecialPair(e, "sep", where, json);
                return new TemplatePostProcessor([[cls], null, [sep]], [($"{where}.cls[1]", cls), ($"{where}.sep[1]", sep)]);
            }
            default:
                throw json.Error($"{where} has post_processor type \"{type}\", which is not supported");
        }
    }

    /// <summary>The ["token", id] pair of Bert/Roberta processing.</summary>
    static int SpecialPair(JsonElement e, string name, string where, JsonFields json)
    {
        var v = JsonFields.Get(e, name);
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != 2 || v[0].ValueKind != JsonValueKind.String)
            throw json.Error($"{where}.{name} must be a [token, id] pair");
        return json.AsInt(v[1], $"{where}.{name}[1]");
    }
}

internal sealed class NoOpPostProcessor : IPostProcessor
{
    public void Process(List<int> sequence, bool addSpecialTokens, List<int> output) => output.AddRange(sequence);

    public IEnumerable<(string Where, int Id)> SpecialIds => [];
}

internal sealed class SequencePostProcessor(IPostProcessor[] items) : IPostProcessor
{
    public void Process(List<int> sequence, bool addSpecialTokens, List<int> output)
    {
        var current = sequence;
        foreach (var p in items)
        {
            var next = new List<int>(current.Count + 4);
            p.Process(current, addSpecialTokens, next);
            current = next;
        }
        output.AddRange(current);
    }

    public IEnumerable<(string Where, int Id)> SpecialIds => items.SelectMany(p => p.SpecialIds);
}

/// <summary>TemplateProcessing's "single" template: each piece is the sequence ($A) or a special token's ids.</summary>
internal sealed class TemplatePostProcessor(int[]?[] pieces, IReadOnlyList<(string Where, int Id)> ids) : IPostProcessor
{
    /// <summary>null stands for the sequence itself.</summary>
    readonly int[]?[] _pieces = pieces;

    public IEnumerable<(string Where, int Id)> SpecialIds => ids;

    public void Process(List<int> sequence, bool addSpecialTokens, List<int> output)
    {
        foreach (var piece in _pieces)
        {
            if (piece is null) output.AddRange(sequence);
            else if (addSpecialTokens) output.AddRange(piece);
        }
    }

    public static TemplatePostProcessor Parse(JsonElement e, string where, JsonFields json)
    {
        var specials = JsonFields.Get(e, "special_tokens");
        if (JsonFields.IsNull(specials)) specials = default;
        else json.RequireObject(specials, $"{where}.special_tokens");

        var single = json.RequireArray(e, "single", where);
        var pieces = new List<int[]?>();
        var idsAt = new List<(string, int)>();
        int i = 0;
        foreach (var piece in single.EnumerateArray())
        {
            string at = $"{where}.single[{i++}]";
            json.RequireObject(piece, at);
            if (piece.TryGetProperty("Sequence", out var seq))
            {
                json.RequireObject(seq, $"{at}.Sequence");
                string id = json.RequireString(seq, "id", $"{at}.Sequence");
                if (id != "A") throw json.Error($"{at}.Sequence.id is \"{id}\", but a single-sequence template can only use A");
                pieces.Add(null);
            }
            else if (piece.TryGetProperty("SpecialToken", out var special))
            {
                json.RequireObject(special, $"{at}.SpecialToken");
                string name = json.RequireString(special, "id", $"{at}.SpecialToken");
                if (specials.ValueKind != JsonValueKind.Object || !specials.TryGetProperty(name, out var entry))
                    throw json.Error($"{at} uses special token {JsonFields.Quote(name)}, which is missing from {where}.special_tokens");
                string entryWhere = $"{where}.special_tokens[{JsonFields.Quote(name)}]";
                json.RequireObject(entry, entryWhere);
                var ids = json.RequireArray(entry, "ids", entryWhere);
                var list = new int[ids.GetArrayLength()];
                int k = 0;
                foreach (var idElement in ids.EnumerateArray())
                {
                    string idWhere = $"{entryWhere}.ids[{k}]";
                    list[k] = json.AsInt(idElement, idWhere);
                    idsAt.Add((idWhere, list[k++]));
                }
                pieces.Add(list);
            }
            else
            {
                throw json.Error($"{at} must be a {{\"Sequence\": ...}} or {{\"SpecialToken\": ...}} piece");
            }
        }
        return new TemplatePostProcessor(pieces.ToArray(), idsAt);
    }
}
