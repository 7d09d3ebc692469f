using System.Globalization;
using System.Text;

namespace SparseDecode.Tokenization;

/// <summary>Rewrites the Oniguruma (Ruby syntax) regexes found in tokenizer.json into .NET syntax. Most of the
/// syntax is shared; this handles the constructs that differ and rejects what .NET cannot express.</summary>
internal static class OnigTranslator
{
    /// <summary>Oniguruma folds U+017F LATIN SMALL LETTER LONG S to 's' under (?i); .NET's case table does not,
    /// so "'ſ" would split differently in patterns such as Llama-3's (?i:'s|'t|...).</summary>
    const char LongS = '\u017F';

    public static string ToDotNet(string pattern)
    {
        var sb = new StringBuilder(pattern.Length + 16);
        // The case-insensitivity in force, saved at each group opening so ')' restores it.
        var saved = new Stack<bool>();
        bool ignoreCase = false;
        int i = 0;
        while (i < pattern.Length)
        {
            char c = pattern[i];
            if (c == '\\')
            {
                i = TranslateEscape(pattern, i, sb, inClass: false);
                continue;
            }
            if (c == '[')
            {
                i = TranslateClass(pattern, i, sb, ignoreCase);
                continue;
            }
            if (c == '(')
            {
                saved.Push(ignoreCase);
                int flagsEnd = ParseInlineFlags(pattern, i, ref ignoreCase, out bool scoped);
                if (flagsEnd > i && !scoped)
                {
                    // "(?i)" changes the rest of the enclosing group: it is not a group of its own.
                    saved.Pop();
                }
                if (flagsEnd > i)
                {
                    // Ruby's (?m) is .NET's (?s): '.' also matches a newline.
                    sb.Append(pattern.AsSpan(i, flagsEnd - i).ToString().Replace('m', 's'));
                    i = flagsEnd;
                }
                else
                {
                    sb.Append(c);
                    i++;
                }
                continue;
            }
            if (c == ')')
            {
                if (saved.Count > 0) ignoreCase = saved.Pop();
                sb.Append(c);
                i++;
                continue;
            }
            if (ignoreCase && (c == 's' || c == 'S'))
            {
                sb.Append('[').Append(c).Append(LongS).Append(']');
                i++;
                continue;
            }
            sb.Append(c);
            i++;
        }
        return sb.ToString();
    }

    /// <summary>At '(' reads "(?flags:" or "(?flags)"; returns the index after it (or <paramref name="start"/> when
    /// the group has no flags) and updates the case-insensitivity for what follows.</summary>
    static int ParseInlineFlags(string p, int start, ref bool ignoreCase, out bool scoped)
    {
        scoped = false;
        int j = start + 1;
        if (j >= p.Length || p[j] != '?') return start;
        j++;
        bool on = true, sawFlag = false, newIgnoreCase = ignoreCase;
        for (; j < p.Length; j++)
        {
            char f = p[j];
            if (f == '-') { on = false; continue; }
            if (f == 'i') { newIgnoreCase = on; sawFlag = true; continue; }
            if (f is 'm' or 'x' or 's' or 'n') { sawFlag = true; continue; }
            break;
        }
        if (!sawFlag || j >= p.Length || (p[j] != ':' && p[j] != ')')) return start;
        scoped = p[j] == ':';
        ignoreCase = newIgnoreCase;
        return j + 1;
    }

    static int TranslateClass(string p, int start, StringBuilder sb, bool ignoreCase)
    {
        sb.Append('[');
        int i = start + 1;
        if (i < p.Length && p[i] == '^') { sb.Append('^'); i++; }
        // A ']' right after the opening is a literal in both dialects.
        if (i < p.Length && p[i] == ']') { sb.Append(']'); i++; }
        bool coversS = false;
        int prevLiteral = -1;
        while (i < p.Length && p[i] != ']')
        {
            char c = p[i];
            if (c == '\\')
            {
                i = TranslateEscape(p, i, sb, inClass: true);
                prevLiteral = -1;
                continue;
            }
            if (c == '[') throw new FormatException("nested character classes are not supported");
            if (c == '-' && prevLiteral >= 0 && i + 1 < p.Length && p[i + 1] != ']' && p[i + 1] != '\\')
            {
                char hi = p[i + 1];
                if ((prevLiteral <= 's' && hi >= 's') || (prevLiteral <= 'S' && hi >= 'S')) coversS = true;
                sb.Append('-').Append(hi);
                i += 2;
                prevLiteral = -1;
                continue;
            }
            if (c is 's' or 'S') coversS = true;
            sb.Append(c);
            prevLiteral = c;
            i++;
        }
        if (i >= p.Length) throw new FormatException("unterminated character class");
        if (ignoreCase && coversS) sb.Append(LongS);
        sb.Append(']');
        return i + 1;
    }

    /// <summary>Copies one escape sequence starting at the backslash at <paramref name="start"/>.</summary>
    static int TranslateEscape(string p, int start, StringBuilder sb, bool inClass)
    {
        if (start + 1 >= p.Length) throw new FormatException("the pattern ends with a backslash");
        char e = p[start + 1];
        switch (e)
        {
            case 'x' when start + 2 < p.Length && p[start + 2] == '{':
            {
                int close = p.IndexOf('}', start + 3);
                if (close < 0) throw new FormatException("unterminated \\x{...} escape");
                string hex = p.Substring(start + 3, close - start - 3);
                if (!int.TryParse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int cp) || cp < 0 || cp > 0x10FFFF)
                    throw new FormatException($"bad escape \\x{{{hex}}}");
                if (cp > 0xFFFF) throw new FormatException($"code points above U+FFFF (\\x{{{hex}}}) are not supported in patterns");
                sb.Append("\\u").Append(cp.ToString("X4", CultureInfo.InvariantCulture));
                return close + 1;
            }
            case 'h':
                sb.Append(inClass ? "0-9a-fA-F" : "[0-9a-fA-F]");
                return start + 2;
            case 'H' when !inClass:
                sb.Append("[^0-9a-fA-F]");
                return start + 2;
            case 'p' or 'P' when start + 3 < p.Length && p[start + 2] == '{' && p[start + 3] == '^':
                // Oniguruma's \p{^L} is the negation .NET spells \P{L}.
                sb.Append('\\').Append(e == 'p' ? 'P' : 'p').Append('{');
                return start + 4;
            default:
                sb.Append('\\').Append(e);
                return start + 2;
        }
    }
}
