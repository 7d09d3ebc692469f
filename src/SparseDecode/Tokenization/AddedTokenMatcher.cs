using System.Globalization;
using System.Buffers;
using System.Text;

namespace SparseDecode.Tokenization;

/// <summary>An entry of tokenizer.json's "added_tokens".</summary>
internal sealed record AddedToken(int Id, string Content, bool SingleWord, bool LStrip, bool RStrip, bool Normalized, bool Special);

/// <summary>Finds added tokens in text the way Hugging Face's AddedVocabulary::find_matches does: leftmost-longest
/// non-overlapping matches (a trie stands in for its Aho-Corasick automaton), then the single_word filter and
/// the lstrip/rstrip widening over surrounding whitespace.</summary>
internal sealed class AddedTokenMatcher
{
    sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public AddedToken? Token;
    }

    readonly Node _root = new();
    readonly bool _empty = true;

    /// <param name="patterns">Each token with the text to look for (its content, or its normalized form).</param>
    public AddedTokenMatcher(IEnumerable<(AddedToken Token, string Pattern)> patterns)
    {
        foreach (var (token, pattern) in patterns)
        {
            if (pattern.Length == 0) continue;
            var node = _root;
            foreach (char c in pattern)
            {
                node.Children ??= new Dictionary<char, Node>();
                if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new Node();
                node = child;
            }
            node.Token ??= token;
            _empty = false;
        }
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

    bool LongestAt(string text, int at, out int end, out AddedToken? token)
    {
        end = -1;
        token = null;
        var node = _root;
        for (int i = at; i < text.Length; i++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[i], out node)) break;
            if (node.Token is not null)
            {
                end = i + 1;
                token = node.Token;
            }
        }
        return token is not null;
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
