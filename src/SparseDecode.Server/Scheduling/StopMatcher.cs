using System.Text;

namespace SparseDecode.Server.Scheduling;

/// <summary>Finds stop strings in generated text as it streams. Text that could be the start of a stop string is
/// held back until the next piece shows whether it is; a stop string found ends the text before it, so neither
/// it nor anything after it is ever sent.</summary>
public sealed class StopMatcher
{
    private readonly string[] _stops;
    private readonly int _longest;
    private readonly StringBuilder _pending = new();

    public StopMatcher(IEnumerable<string> stops)
    {
        _stops = stops.Where(s => s.Length > 0).Distinct(StringComparer.Ordinal).ToArray();
        _longest = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length);
    }

    public bool Stopped { get; private set; }

    /// <summary>Adds a piece of text; returns the text that can be sent now (possibly empty). After a stop string
    /// has been found, Stopped is true and every later piece is dropped.</summary>
    public string Push(string piece)
    {
        if (Stopped) return "";
        if (_stops.Length == 0) return piece;
        _pending.Append(piece);
        string text = _pending.ToString();
        int cut = -1;
        foreach (string s in _stops)
        {
            int at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return text[..cut];
        }
        int hold = HeldSuffix(text);
        _pending.Clear().Append(text, text.Length - hold, hold);
        return text[..^hold];
    }

    /// <summary>The text held back at the end of generation (no stop string followed it).</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : _pending.ToString();
        _pending.Clear();
        return rest;
    }

    // Length of the longest suffix of text that is a proper prefix of some stop string.
    private int HeldSuffix(string text)
    {
        for (int len = Math.Min(text.Length, _longest - 1); len > 0; len--)
        {
            var suffix = text.AsSpan(text.Length - len);
            foreach (string s in _stops)
                if (s.Length > len && s.AsSpan(0, len).SequenceEqual(suffix)) return len;
        }
        return 0;
    }
}
