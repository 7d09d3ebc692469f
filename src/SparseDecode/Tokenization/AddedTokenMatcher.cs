using System.Globalization;
using System.Buffers;
using System.Text;

namespace SparseDecode.Tokenization;

/// <summary>An entry of tokenizer.json's "added_tokens".</summary>
internal sealed record AddedToken(int Id, string Content, bool SingleWord, bool LStrip, bool RStrip, bool Normalized, bool Special);

/// <summary>Finds added tokens in text the way Hugging Face's AddedVocabulary::find_matches does: leftmost-longest
/// non-overlapping matches, then the single_word filter and the lstrip/rstrip widening over surrounding
/// whitespace. The patterns are kept as one ordinally sorted array, searched by narrowing a range character by
/// character: memory is the patterns themselves plus two references each (a trie of per-node dictionaries took
/// ~250 bytes per character: 1 GB for 20,000 tokens of 210 characters), and a lookup costs O(length × log n).</summary>
internal sealed class AddedTokenMatcher
{
    readonly string[] _patterns;
    readonly AddedToken[] _tokens;
    readonly bool _empty;

    /// <param name="patterns">Each token with the text to look for (its content, or its normalized form). When two
    /// tokens share a pattern the first one wins.</param>
    public AddedTokenMatcher(IEnumerable<(AddedToken Token, string Pattern)> patterns)
    {
        var list = patterns.Where(p => p.Pattern.Length > 0).Select((p, i) => (p.Pattern, p.Token, Order: i)).ToList();
        list.Sort((a, b) => string.CompareOrdinal(a.Pattern, b.Pattern) is int c && c != 0 ? c : a.Order.CompareTo(b.Order));
        var kept = new List<(string Pattern, AddedToken Token)>(list.Count);
        foreach (var (pattern, token, _) in list)
            if (kept.Count == 0 || kept[^1].Pattern != pattern) kept.Add((pattern, token));
        _patterns = kept.Select(k => k.Pattern).ToArray();
        _tokens = kept.Select(k => k.Token).ToArray();
        _empty = _patterns.Length == 0;
    }

    /// <summary>Splits <paramref name="text"/> into spans covering it: (start, end, token) where token is null for
    /// ordinary text. Spans follow Hugging Face exactly, including its overlap when rstrip reaches into a later match.</summary>
    public void Split(string text, List<(int Start, int End, AddedToken? Token)> spans)
    {
        if (_empty || text.Length == 0)
        {
            spans.Add((0, text.Length, null));
            return;
        }
        int startOffset = 0;
        int scan = 0;
        while (scan < text.Length)
        {
            if (!LongestAt(text, scan, out int matchEnd, out var token))
            {
                scan++;
                continue;
            }
            int start = scan, stop = matchEnd;
            scan = matchEnd;
            if (token!.SingleWord)
            {
                bool startSpace = start == 0 || !EndsWithWordChar(text, start);
                bool stopSpace = stop == text.Length || !StartsWithWordChar(text, stop);
                if (!startSpace || !stopSpace) continue;
            }
            if (token.LStrip)
            {
                int newStart = start;
                while (newStart > 0 && char.IsWhiteSpace(text[newStart - 1])) newStart--;
                start = Math.Max(newStart, startOffset);
            }
            if (token.RStrip)
            {
                while (stop < text.Length && char.IsWhiteSpace(text[stop])) stop++;
            }
            if (startOffset < start) spans.Add((startOffset, start, null));
            spans.Add((start, stop, token));
            startOffset = stop;
        }
        if (startOffset != text.Length) spans.Add((startOffset, text.Length, null));
    }

    /// <summary>The longest pattern starting at text[at]. Invariant: every pattern in [lo, hi) starts with
    /// text[at .. at + d]; sorted ordinally, the one of length exactly d (if any) comes first.</summary>
    bool LongestAt(string text, int at, out int end, out AddedToken? token)
    {
        end = -1;
        token = null;
        int lo = 0, hi = _patterns.Length;
        for (int d = 0; at + d < text.Length; d++)
        {
            if (lo < hi && _patterns[lo].Length == d) lo++;
            char c = text[at + d];
            lo = FirstWithCharAtLeast(lo, hi, d, c);
            hi = FirstWithCharAtLeast(lo, hi, d, (char)(c + 1), c == char.MaxValue);
            if (lo >= hi) break;
            if (_patterns[lo].Length == d + 1)
            {
                end = at + d + 1;
                token = _tokens[lo];
            }
        }
        return token is not null;
    }

    /// <summary>First index in [lo, hi) whose pattern has a character ≥ c at d (all there are longer than d).</summary>
    int FirstWithCharAtLeast(int lo, int hi, int d, char c, bool none = false)
    {
        if (none) return hi;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_patterns[mid][d] < c) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// <summary>Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, joiners.</summary>
    static bool IsWordChar(Rune r)
    {
        if (r.Value is 0x200C or 0x200D) return true;
        return Rune.GetUnicodeCategory(r) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.LetterNumber
                or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation => true,
            _ => false,
        };
    }

    static bool EndsWithWordChar(string text, int end) =>
        Rune.DecodeLastFromUtf16(text.AsSpan(0, end), out var r, out _) == OperationStatus.Done && IsWordChar(r);

    static bool StartsWithWordChar(string text, int start) =>
        Rune.DecodeFromUtf16(text.AsSpan(start), out var r, out _) == OperationStatus.Done && IsWordChar(r);
}
