using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace SparseDecode.Tokenization;

/// <summary>The "BPE" model of tokenizer.json: vocabulary, ranked merges, unknown-token and byte-fallback
/// handling, turning one pre-token into ids the way Hugging Face's BPE::tokenize does.</summary>
internal sealed class BpeModel
{
    /// <summary>Hugging Face caches words shorter than this many bytes; longer ones are rarely repeated.</summary>
    const int CacheMaxLength = 256;
    const int CacheCapacity = 10_000;

    readonly Dictionary<string, int> _vocab;
    readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    readonly Dictionary<int, string> _tokens;
    readonly Dictionary<long, long> _merges;
    readonly int _unkId = -1;
    readonly bool _fuseUnk, _byteFallback, _ignoreMerges;
    readonly string? _prefix, _suffix;
    /// <summary>Id of each "&lt;0xNN&gt;" byte token, or -1.</summary>
    readonly int[] _byteIds = new int[256];
    readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    int _cacheCount;
    /// <summary>Scratch symbol buffer, reused so that cache misses do not allocate per word.</summary>
    [ThreadStatic] static List<int>? t_symbols;

    BpeModel(Dictionary<string, int> vocab, Dictionary<long, long> merges, string? unk, bool fuseUnk, bool byteFallback,
        bool ignoreMerges, string? prefix, string? suffix)
    {
        _vocab = vocab;
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _tokens = new Dictionary<int, string>(vocab.Count);
        foreach (var (token, id) in vocab) _tokens.TryAdd(id, token);
        _merges = merges;
        if (unk is not null) _unkId = vocab[unk];
        _fuseUnk = fuseUnk;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
        _prefix = prefix;
        _suffix = suffix;
        for (int b = 0; b < 256; b++) _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
    }

    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    public string? IdToToken(int id) => _tokens.GetValueOrDefault(id);

    public static BpeModel Parse(JsonElement e, string where, JsonFields json)
    {
        json.RequireObject(e, where);
        // Early tokenizer.json files omit the model's type; like Hugging Face, a model with merges is BPE.
        string type = JsonFields.Get(e, "type").ValueKind == JsonValueKind.Undefined && e.TryGetProperty("merges", out _)
            ? "BPE"
            : json.RequireString(e, "type", where);
        if (type != "BPE")
            throw json.Error($"{where}.type is \"{type}\", but only BPE models are supported");

        var dropout = JsonFields.Get(e, "dropout");
        if (!JsonFields.IsNull(dropout) && !(dropout.ValueKind == JsonValueKind.Number && dropout.GetDouble() == 0))
            throw json.Error($"{where}.dropout is set, but BPE dropout (random merges) is not supported");

        var vocabJson = JsonFields.Get(e, "vocab");
        json.RequireObject(vocabJson, $"{where}.vocab");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var byId = new Dictionary<int, string>();
        foreach (var p in vocabJson.EnumerateObject())
        {
            string at = $"{where}.vocab[{JsonFields.Quote(p.Name)}]";
            // Bounded like a model's vocabulary: an id of 2^31 − 1 would overflow the tokenizer's id count.
            int id = json.AsInt(p.Value, at, max: Model.ModelConfig.MaxVocab - 1);
            // Two tokens on one id decode to only one of them, so the other's text is lost from every output.
            if (!byId.TryAdd(id, p.Name) && byId[id] != p.Name)
                throw json.Error($"{at} is id {id}, which {where}.vocab[{JsonFields.Quote(byId[id])}] already has");
            vocab[p.Name] = id;
        }
        // An empty vocabulary encodes every text to nothing (or only unknown tokens) without any error.
        if (vocab.Count == 0) throw json.Error($"{where}.vocab is empty");

        string? prefix = json.OptionalString(e, "continuing_subword_prefix", where);
        string? suffix = json.OptionalString(e, "end_of_word_suffix", where);
        var merges = ParseMerges(json.RequireArray(e, "merges", where), vocab, prefix?.Length ?? 0, where, json);

        string? unk = json.OptionalString(e, "unk_token", where);
        if (unk is not null && !vocab.ContainsKey(unk))
            throw json.Error($"{where}.unk_token {JsonFields.Quote(unk)} is not in the vocabulary");

        return new BpeModel(vocab, merges, unk,
            json.OptionalBool(e, "fuse_unk", where, false),
            json.OptionalBool(e, "byte_fallback", where, false),
            json.OptionalBool(e, "ignore_merges", where, false),
            prefix, suffix);
    }

    static Dictionary<long, long> ParseMerges(JsonElement array, Dictionary<string, int> vocab, int prefixLength, string where, JsonFields json)
    {
        var merges = new Dictionary<long, long>(array.GetArrayLength());
        int rank = 0;
        int index = 0;
        foreach (var m in array.EnumerateArray())
        {
            string at = $"{where}.merges[{index++}]";
            string a, b;
            if (m.ValueKind == JsonValueKind.String)
            {
                string line = m.GetString()!;
                // The legacy merges.txt form; its "#version" header line is not a merge.
                if (line.StartsWith("#version", StringComparison.Ordinal)) continue;
                int space = line.IndexOf(' ');
                if (space < 0 || line.IndexOf(' ', space + 1) >= 0)
                    throw json.Error($"{at} {JsonFields.Quote(line)} is not two tokens separated by one space");
                a = line[..space];
                b = line[(space + 1)..];
            }
            else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2
                     && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
            {
                a = m[0].GetString()!;
                b = m[1].GetString()!;
            }
            else
            {
                throw json.Error($"{at} must be a \"left right\" string or a [left, right] array");
            }
            if (!vocab.TryGetValue(a, out int aId))
                throw json.Error($"{at} references token {JsonFields.Quote(a)}, which is not in the vocabulary");
            if (!vocab.TryGetValue(b, out int bId))
                throw json.Error($"{at} references token {JsonFields.Quote(b)}, which is not in the vocabulary");
            if (b.Length < prefixLength)
                throw json.Error($"{at} right token {JsonFields.Quote(b)} lacks the continuing_subword_prefix");
            string merged = a + b[prefixLength..];
            if (!vocab.TryGetValue(merged, out int newId))
                throw json.Error($"{at} produces token {JsonFields.Quote(merged)}, which is not in the vocabulary");
            // A repeated pair keeps its last rank, as Hugging Face's map construction does.
            merges[BytePairEncoder.PairKey(aId, bId)] = BytePairEncoder.MergeValue(rank++, newId);
        }
        return merges;
    }

    /// <summary>Appends the ids of one pre-token.</summary>
    public void Tokenize(string word, List<int> ids)
    {
        if (word.Length == 0) return;
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        bool cacheable = word.Length < CacheMaxLength;
        if (cacheable && _cache.TryGetValue(word, out int[]? cached))
        {
            ids.AddRange(cached);
            return;
        }

        var symbols = t_symbols ??= new List<int>();
        symbols.Clear();
        AddInitialSymbols(word, symbols);
        var all = CollectionsMarshal.AsSpan(symbols);
        var span = all[..BytePairEncoder.Merge(all, _merges)];
        foreach (int id in span) ids.Add(id);

        if (cacheable && _cacheCount < CacheCapacity && _cache.TryAdd(word, span.ToArray()))
            Interlocked.Increment(ref _cacheCount);
    }

    /// <summary>One symbol per character (code point), with byte fallback and unknown-token fusing, as in
    /// Hugging Face's BPE::merge_word.</summary>
    void AddInitialSymbols(string word, List<int> symbols)
    {
        int pendingUnk = -1;
        Span<byte> utf8 = stackalloc byte[4];
        int i = 0;
        while (i < word.Length)
        {
            int len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            bool first = i == 0, last = i + len == word.Length;
            int id;
            bool known;
            if (_prefix is null && _suffix is null)
            {
                known = _vocabBySpan.TryGetValue(word.AsSpan(i, len), out id);
            }
            else
            {
                string s = word.Substring(i, len);
                if (!first && _prefix is not null) s = _prefix + s;
                if (last && _suffix is not null) s += _suffix;
                known = _vocab.TryGetValue(s, out id);
            }

            if (known)
            {
                if (pendingUnk >= 0)
                {
                    symbols.Add(pendingUnk);
                    pendingUnk = -1;
                }
                symbols.Add(id);
            }
            else if (_byteFallback && TryByteFallback(word.AsSpan(i, len), utf8, symbols))
            {
                // Like Hugging Face, a pending unknown token is not flushed before byte tokens.
            }
            else if (_unkId >= 0)
            {
                if (pendingUnk >= 0 && !_fuseUnk) symbols.Add(pendingUnk);
                pendingUnk = _unkId;
            }
            // Without an unknown token the character is dropped, as Hugging Face does.
            i += len;
        }
        if (pendingUnk >= 0) symbols.Add(pendingUnk);
    }

    bool TryByteFallback(ReadOnlySpan<char> ch, Span<byte> utf8, List<int> symbols)
    {
        int n = Encoding.UTF8.GetBytes(ch, utf8);
        for (int k = 0; k < n; k++)
            if (_byteIds[utf8[k]] < 0) return false;
        for (int k = 0; k < n; k++) symbols.Add(_byteIds[utf8[k]]);
        return true;
    }
}
