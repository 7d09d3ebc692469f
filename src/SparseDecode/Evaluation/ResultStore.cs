using System.Text;
using System.Text.Json;

namespace SparseDecode.Evaluation;

/// <summary>Cell results on disk as JSON lines (one cell a line, appended and flushed as each finishes), keyed by
/// the cell, so that an interrupted run picks up where it stopped. A torn last line is ignored.</summary>
public sealed class ResultStore
{
    public const string FileName = "cells.jsonl";
    private readonly Dictionary<string, CellResult> _cells = new(StringComparer.Ordinal);
    private readonly string _path;

    public ResultStore(string directory, bool fresh = false)
    {
        Directory.CreateDirectory(directory);
        _path = System.IO.Path.Combine(directory, FileName);
        if (fresh && File.Exists(_path)) File.Delete(_path);
        if (!File.Exists(_path)) return;
        EndWithNewline();
        foreach (string line in File.ReadLines(_path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                if (JsonSerializer.Deserialize(line, EvalJson.Default.CellResult) is { } c) _cells[c.Key] = c;
            }
            catch (JsonException)
            {
                // a line cut short by an interrupted write: that cell simply runs again
            }
        }
    }

    /// <summary>An interrupted write may leave a line without its newline; the next cell must start a line of its own.</summary>
    private void EndWithNewline()
    {
        using var f = new FileStream(_path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        if (f.Length == 0) return;
        f.Seek(-1, SeekOrigin.End);
        if (f.ReadByte() == '\n') return;
        f.Seek(0, SeekOrigin.End);
        f.WriteByte((byte)'\n');
    }

    public string Path => _path;
    public int Count => _cells.Count;

    public bool Contains(string key) => _cells.ContainsKey(key);

    public CellResult? Get(string key) => _cells.GetValueOrDefault(key);

    public void Add(CellResult cell)
    {
        _cells[cell.Key] = cell;
        string line = JsonSerializer.Serialize(cell, EvalJson.Default.CellResult) + "\n";
        using var f = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read);
        var bytes = Encoding.UTF8.GetBytes(line);
        f.Write(bytes);
        f.Flush(true);
    }
}
