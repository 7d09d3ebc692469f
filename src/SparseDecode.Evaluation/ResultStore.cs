using System.Text;
using System.Text.Json;

namespace SparseDecode.Evaluation;

/// <summary>Cell results on disk as JSON lines (one cell a line, appended and flushed as each finishes), keyed by
/// the cell, so that an interrupted run picks up where it stopped. A line that cannot be read (torn by an
/// interrupted write, edited by hand, "key": null) is skipped and listed in <see cref="Skipped"/>: its cell runs
/// again, and no line can stop later runs.</summary>
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
        int number = 0;
        foreach (string line in File.ReadLines(_path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            if (Read(line, out string? why) is { } c) _cells[c.Key] = c;
            else _skipped.Add((number, why!));
        }
    }

    private readonly List<(int Line, string Reason)> _skipped = [];

    /// <summary>The lines (1-based) that could not be read, and why.</summary>
    public IReadOnlyList<(int Line, string Reason)> Skipped => _skipped;

    /// <summary>One cell from one line, or null with the reason. The serializer does not enforce non-null on
    /// required strings, so they are checked here: a null key once failed every later run.</summary>
    public static CellResult? Read(string line, out string? reason)
    {
        CellResult? c;
        try
        {
            c = JsonSerializer.Deserialize(line, EvalJson.Default.CellResult);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException or ArgumentException)
        {
            reason = "not a cell result (" + e.Message.TrimEnd('.') + ")";
            return null;
        }
        reason = c is null ? "null"
            : c.Key is null ? "'key' is null"
            : c.Model is null || c.Method is null || c.Budget is null || c.Task is null ? "'model', 'method', 'budget' or 'task' is null"
            : null;
        return reason is null ? c : null;
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
