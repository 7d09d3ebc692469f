using System.Text.Json;

namespace SparseDecode.Model;

/// <summary>All tensors of a checkpoint directory: one model.safetensors, or the shards listed by
/// model.safetensors.index.json. Lookups check the expected shape so a mismatched checkpoint is refused
/// with the tensor's name rather than producing wrong numbers.</summary>
public sealed class WeightStore : IDisposable
{
    private readonly List<SafetensorsFile> _files = [];
    private readonly Dictionary<string, SafetensorsFile> _byName = new(StringComparer.Ordinal);

    public string Directory { get; }

    private WeightStore(string directory) => Directory = directory;

    public static WeightStore Open(string directory)
    {
        var store = new WeightStore(directory);
        try
        {
            string single = System.IO.Path.Combine(directory, "model.safetensors");
            string index = System.IO.Path.Combine(directory, "model.safetensors.index.json");
            if (File.Exists(single)) store.Add(SafetensorsFile.Open(single));
            else if (File.Exists(index)) store.OpenShards(index);
            else throw new ModelFormatException($"{directory}: neither model.safetensors nor model.safetensors.index.json exists.");
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    private void OpenShards(string indexPath)
    {
        var shards = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        Dictionary<string, string> map;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            map = doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .ToDictionary(p => p.Name, p => p.Value.GetString() ?? throw new FormatException($"'{p.Name}' maps to null"));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException($"{indexPath}: not a valid safetensors index ({e.Message}).");
        }
        foreach (var (tensor, shardName) in map)
        {
            if (shardName.Contains('/') || shardName.Contains('\\') || shardName.Contains(".."))
                throw new ModelFormatException($"{indexPath}: shard name '{shardName}' must be a file in the model directory.");
            if (!shards.TryGetValue(shardName, out var shard))
            {
                shard = SafetensorsFile.Open(System.IO.Path.Combine(Directory, shardName));
                shards[shardName] = shard;
                _files.Add(shard);
            }
            if (!shard.Contains(tensor))
                throw new ModelFormatException($"{shard.Path}: tensor '{tensor}' listed in the index is missing from the shard.");
            _byName[tensor] = shard;
        }
    }

    private void Add(SafetensorsFile file)
    {
        _files.Add(file);
        foreach (string name in file.TensorNames) _byName[name] = file;
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public TensorView Get(string name, params long[] expectedShape)
    {
        if (!_byName.TryGetValue(name, out var file))
            throw new ModelFormatException($"{Directory}: tensor '{name}' is missing from the checkpoint.");
        var t = file.Get(name);
        if (!t.Shape.AsSpan().SequenceEqual(expectedShape))
            throw new ModelFormatException($"{file.Path}: tensor '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", expectedShape)}] from config.json.");
        // Read as f16, bf16 bits give weights of the right shape and wrong values: the model loads and talks nonsense.
        if (WeightCheck.LooksLikeBf16(t))
            throw new ModelFormatException($"{file.Path}: tensor '{name}' has dtype F16, but its values are bf16 bits (read as f16, none lies near zero); the header should say BF16.");
        return t;
    }

    public IEnumerable<TensorView> All() => _byName.Select(kv => kv.Value.Get(kv.Key));

    public long TotalBytes => _files.Sum(f => new FileInfo(f.Path).Length);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
        _files.Clear();
    }
}
