using System.IO.Compression;
using System.Text;

namespace SparseDecode.Evaluation;

/// <summary>The held-out split of the reference model's corpus (code the model never trained on), as the token
/// stream training sampled haystacks from: every document tokenized on its own and followed by the begin-of-text
/// separator. Documents are tokenized on first use, so a window costs only the documents it touches.</summary>
public sealed class HeldoutCorpus
{
    public const string Separator = "<|endoftext|>";
    private readonly ITaskTokenizer _tokenizer;
    private readonly string[] _documents;
    private readonly long[] _charStarts; // prefix sums of document lengths: a window starts at a uniform character
    private readonly int[]?[] _tokens;
    private readonly object _lock = new();

    public HeldoutCorpus(IReadOnlyList<string> documents, ITaskTokenizer tokenizer)
    {
        _documents = documents.Where(d => d.Length > 0).ToArray();
        if (_documents.Length == 0) throw new ArgumentException("The held-out corpus has no documents.");
        _tokenizer = tokenizer;
        _tokens = new int[]?[_documents.Length];
        _charStarts = new long[_documents.Length + 1];
        for (int i = 0; i < _documents.Length; i++) _charStarts[i + 1] = _charStarts[i] + _documents[i].Length;
    }

    public IReadOnlyList<string> Documents => _documents;

    /// <summary>Path of the held-out text that travels with a model (heldout.txt.gz or heldout.txt), or null.</summary>
    public static string? Find(string modelDirectory)
    {
        foreach (string name in new[] { "heldout.txt.gz", "heldout.txt" })
        {
            string p = Path.Combine(modelDirectory, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    public static HeldoutCorpus Load(string path, ITaskTokenizer tokenizer)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: held-out text not found.", path);
        string text;
        using (var file = File.OpenRead(path))
        using (Stream s = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file)
        using (var reader = new StreamReader(s, Encoding.UTF8))
            text = reader.ReadToEnd();
        return new HeldoutCorpus(text.Split(Separator), tokenizer);
    }

    public int[] DocumentTokens(int index)
    {
        var t = _tokens[index];
        if (t is not null) return t;
        t = _tokenizer.Encode(_documents[index]);
        lock (_lock) _tokens[index] = t;
        return t;
    }

    /// <summary>`length` consecutive tokens of the stream (documents each followed by the separator, wrapping at the
    /// end) from a position drawn uniformly by characters.</summary>
    public int[] Window(Random rng, int length)
    {
        if (length <= 0) return [];
        long c = (long)(rng.NextDouble() * _charStarts[^1]);
        int doc = Array.BinarySearch(_charStarts, c);
        if (doc < 0) doc = ~doc - 1;
        doc = Math.Clamp(doc, 0, _documents.Length - 1);
        double frac = (c - _charStarts[doc]) / (double)Math.Max(1, _documents[doc].Length);
        var output = new int[length];
        int n = 0;
        var tokens = DocumentTokens(doc);
        int start = Math.Min(tokens.Length, (int)(frac * tokens.Length));
        int guard = 0;
        while (n < length)
        {
            int take = Math.Min(length - n, tokens.Length - start);
            tokens.AsSpan(start, take).CopyTo(output.AsSpan(n));
            n += take;
            if (n < length) output[n++] = _tokenizer.BeginOfText;
            doc = (doc + 1) % _documents.Length;
            tokens = DocumentTokens(doc);
            start = 0;
            if (++guard > 10 * _documents.Length + length) throw new InvalidOperationException("The held-out corpus tokenizes to nothing.");
        }
        return output;
    }
}
