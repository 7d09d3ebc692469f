using System.Text.Json;
using System.Text.Json.Nodes;

namespace SparseDecode.Selection;

/// <summary>Model-dependent method settings stored beside a checkpoint in `sparse_methods.json` (written by
/// `sparsedecode calibrate`): per method, parameter values that replace the method's depth-scaled defaults for this
/// model. An explicit --param (or a request's own parameters) still wins. The "speculation" member is the draft
/// `calibrate --speculate` chose for self-speculative decoding (<see cref="Speculation"/>). The file's "calibration"
/// member records how each value was chosen; it is read by people, not by the engine.</summary>
public sealed class MethodDefaults
{
    public const string FileName = "sparse_methods.json";
    public const string SpeculationMember = "speculation";

    /// <summary>A draft for self-speculative decoding: the method drafting at its budget, and the draft tokens per
    /// pass ("4", or "auto").</summary>
    public sealed record Draft(string Method, string Budget, string Tokens);

    private readonly Dictionary<string, Dictionary<string, string>> _byMethod;

    private MethodDefaults(Dictionary<string, Dictionary<string, string>> byMethod, Draft? speculation = null)
    {
        _byMethod = byMethod;
        Speculation = speculation;
    }

    public static MethodDefaults None { get; } = new(new(StringComparer.OrdinalIgnoreCase));

    /// <summary>The draft stored for `--speculate` without a method or a draft length (null: none calibrated).</summary>
    public Draft? Speculation { get; }

    /// <summary>The defaults stored in `directory` (none when it has no such file). A file that is not valid JSON,
    /// names an unknown method or parameter, or gives a bad value is refused with one sentence naming the file.</summary>
    public static MethodDefaults Load(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path)) return None;
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{path}: not valid JSON ({e.Message}).");
        }
        if (root is not JsonObject obj) throw new ArgumentException($"{path}: expected a JSON object of methods.");
        var byMethod = new Dictionary<string, Dictionary<string, string>>(StringComparer.OrdinalIgnoreCase);
        Draft? speculation = null;
        foreach (var (method, node) in obj)
        {
            if (method == "calibration") continue;
            if (method == SpeculationMember)
            {
                speculation = ReadDraft(path, node);
                continue;
            }
            if (node is not JsonObject ps) throw new ArgumentException($"{path}: '{method}' must be an object of parameters.");
            var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var (name, value) in ps)
                d[name] = value is JsonValue v && v.TryGetValue(out string? s) ? s : value?.ToJsonString() ?? "";
            try
            {
                SelectorSpec.CheckParameters(method, d);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"{path}: {e.Message}");
            }
            byMethod[method] = d;
        }
        return new MethodDefaults(byMethod, speculation);
    }

    /// <summary>The "speculation" member: {"method": "tidal", "budget": "2%", "draft": "4"}, checked as the
    /// commands check --method, --budget and --speculate.</summary>
    private static Draft ReadDraft(string path, JsonNode? node)
    {
        string? Text(string name) => node is JsonObject o && o[name] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
        if (Text("method") is not string method || Text("budget") is not string budget || Text("draft") is not string tokens)
            throw new ArgumentException($"{path}: '{SpeculationMember}' must give \"method\", \"budget\" and \"draft\" as strings.");
        try
        {
            if (SelectorSpec.Parse(method, budget, new Dictionary<string, string>()).IsDense)
                throw new ArgumentException($"the draft method must be sparse, not '{method}'.");
            SpeculationOptions.Parse(tokens);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{path}: '{SpeculationMember}': {e.Message}");
        }
        return new Draft(method, budget, tokens);
    }

    /// <summary>The stored settings of `method`, overridden by the explicit ones.</summary>
    public IReadOnlyDictionary<string, string> Apply(string method, IReadOnlyDictionary<string, string> explicitParameters)
    {
        var d = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (_byMethod.TryGetValue((method ?? "").Trim(), out var stored))
            foreach (var (k, v) in stored) d[k] = v;
        foreach (var (k, v) in explicitParameters) d[k] = v;
        return d;
    }

    /// <summary>Every stored setting as "method.name" entries (the evaluation grid's scoped parameters).</summary>
    public IEnumerable<KeyValuePair<string, string>> Scoped() =>
        _byMethod.SelectMany(m => m.Value.Select(p => new KeyValuePair<string, string>($"{m.Key}.{p.Key}", p.Value)));

    /// <summary>Writes settings of one method and how they were chosen into `directory`'s file, keeping every other
    /// method and setting.</summary>
    public static void Save(string directory, string method, IReadOnlyDictionary<string, string> settings, JsonObject provenance) =>
        Update(directory, (root, cal) =>
        {
            if (root[method] is not JsonObject ps) root[method] = ps = new JsonObject();
            foreach (var (k, v) in settings) ps[k] = v;
            if (cal[method] is not JsonObject byParameter) cal[method] = byParameter = new JsonObject();
            byParameter[string.Join(",", settings.Keys)] = provenance;
        });

    /// <summary>Writes the draft for self-speculative decoding and how it was chosen into `directory`'s file,
    /// keeping every method's settings.</summary>
    public static void SaveSpeculation(string directory, Draft draft, JsonObject provenance) =>
        Update(directory, (root, cal) =>
        {
            root[SpeculationMember] = new JsonObject { ["method"] = draft.Method, ["budget"] = draft.Budget, ["draft"] = draft.Tokens };
            cal[SpeculationMember] = provenance;
        });

    /// <summary>The file read (or a new one), changed — its root and its "calibration" member — and replaced whole.</summary>
    private static void Update(string directory, Action<JsonObject, JsonObject> change)
    {
        string path = Path.Combine(directory, FileName);
        var root = File.Exists(path) && JsonNode.Parse(File.ReadAllText(path)) is JsonObject o ? o : new JsonObject();
        if (root["calibration"] is not JsonObject cal) root["calibration"] = cal = new JsonObject();
        change(root, cal);
        string tmp = path + ".tmp";
        File.WriteAllText(tmp, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.Move(tmp, path, overwrite: true);
    }
}
