using System.Globalization;
using System.Text;

namespace SparseDecode.Tokenization;

/// <summary>Unicode normalization forms (UAX #15) from the generated tables: .NET's string.Normalize is a no-op
/// under InvariantGlobalization, and Qwen2-style tokenizers declare an NFC normalizer.</summary>
internal static class UnicodeNormalizer
{
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7, LCount = 19, VCount = 21, TCount = 28;
    const int NCount = VCount * TCount, SCount = LCount * NCount;

    sealed class Tables
    {
        /// <summary>Full (recursive) decompositions.</summary>
        public readonly Dictionary<int, int[]> Canonical = new(), Compatibility = new();
        public readonly Dictionary<int, byte> CombiningClass = new();
        /// <summary>(first &lt;&lt; 21 | second) → primary composite.</summary>
        public readonly Dictionary<long, int> Compose = new();
    }

    static readonly Lazy<Tables> Data = new(Build);

    public static string Normalize(string text, bool compose, bool compatibility)
    {
        // ASCII is invariant under every form; below U+0300 nothing decomposes canonically in a way NFC keeps,
        // and nothing combines, so NFC leaves such text alone too.
        int limit = compose && !compatibility ? 0x300 : 0x80;
        bool simple = true;
        foreach (char c in text)
        {
            if (c >= limit) { simple = false; break; }
        }
        if (simple) return text;

        var t = Data.Value;
        var cps = new List<int>(text.Length + 8);
        foreach (var rune in text.EnumerateRunes()) Decompose(rune.Value, compatibility, t, cps);
        Reorder(cps, t);
        if (compose) Compose(cps, t);
        var sb = new StringBuilder(cps.Count + 8);
        foreach (int cp in cps) sb.Append(char.ConvertFromUtf32(cp));
        return sb.ToString();
    }

    static void Decompose(int cp, bool compatibility, Tables t, List<int> output)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
            return;
        }
        if ((compatibility ? t.Compatibility : t.Canonical).TryGetValue(cp, out var mapping)) output.AddRange(mapping);
        else output.Add(cp);
    }

    static int Ccc(int cp, Tables t) => t.CombiningClass.TryGetValue(cp, out byte c) ? c : 0;

    /// <summary>Canonical ordering: a stable sort of each run of non-starters by combining class.</summary>
    static void Reorder(List<int> cps, Tables t)
    {
        for (int i = 1; i < cps.Count; i++)
        {
            int c = Ccc(cps[i], t);
            if (c == 0) continue;
            int j = i;
            while (j > 0 && Ccc(cps[j - 1], t) > c)
            {
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                j--;
            }
        }
    }

    static void Compose(List<int> cps, Tables t)
    {
        if (cps.Count == 0) return;
        int starter = Ccc(cps[0], t) == 0 ? 0 : -1;
        int lastClass = starter == 0 ? 0 : 256;
        int write = 1;
        for (int read = 1; read < cps.Count; read++)
        {
            int cp = cps[read];
            int cc = Ccc(cp, t);
            if (starter >= 0 && (lastClass < cc || (lastClass == 0 && write - 1 == starter)) && TryCompose(cps[starter], cp, t, out int composite))
            {
                cps[starter] = composite;
                continue;
            }
            if (cc == 0)
            {
                starter = write;
                lastClass = 0;
            }
            else
            {
                lastClass = cc;
            }
            cps[write++] = cp;
        }
        cps.RemoveRange(write, cps.Count - write);
    }

    static bool TryCompose(int first, int second, Tables t, out int composite)
    {
        if (first >= LBase && first < LBase + LCount && second >= VBase && second < VBase + VCount)
        {
            composite = SBase + ((first - LBase) * VCount + (second - VBase)) * TCount;
            return true;
        }
        if (first >= SBase && first < SBase + SCount && (first - SBase) % TCount == 0 && second > TBase && second < TBase + TCount)
        {
            composite = first + (second - TBase);
            return true;
        }
        return t.Compose.TryGetValue(((long)first << 21) | (uint)second, out composite);
    }

    static Tables Build()
    {
        var t = new Tables();
        var canonical = new Dictionary<int, int[]>();
        var compatibility = new Dictionary<int, int[]>();
        foreach (var entry in UnicodeNormalizationData.Decompositions.Split(';'))
        {
            int sep = entry.IndexOfAny([':', '=']);
            int cp = Hex(entry[..sep]);
            int[] mapping = entry[(sep + 1)..].Split(' ').Select(Hex).ToArray();
            if (entry[sep] == ':') canonical[cp] = mapping;
            compatibility[cp] = mapping;
        }
        foreach (var entry in UnicodeNormalizationData.CombiningClasses.Split(';'))
        {
            int colon = entry.IndexOf(':');
            var (first, last) = Range(entry[..colon]);
            byte value = byte.Parse(entry[(colon + 1)..], CultureInfo.InvariantCulture);
            for (int cp = first; cp <= last; cp++) t.CombiningClass[cp] = value;
        }
        var excluded = new HashSet<int>();
        foreach (var entry in UnicodeNormalizationData.CompositionExclusions.Split(';'))
        {
            var (first, last) = Range(entry);
            for (int cp = first; cp <= last; cp++) excluded.Add(cp);
        }
        foreach (var (cp, mapping) in canonical)
        {
            t.Canonical[cp] = Expand(cp, canonical, null);
            if (mapping.Length == 2 && !excluded.Contains(cp)) t.Compose[((long)mapping[0] << 21) | (uint)mapping[1]] = cp;
        }
        foreach (var cp in compatibility.Keys) t.Compatibility[cp] = Expand(cp, compatibility, null);
        return t;
    }

    /// <summary>The full decomposition: mappings applied until nothing changes.</summary>
    static int[] Expand(int cp, Dictionary<int, int[]> table, List<int>? output)
    {
        var result = output ?? new List<int>();
        if (table.TryGetValue(cp, out var mapping))
            foreach (int m in mapping) Expand(m, table, result);
        else
            result.Add(cp);
        return output is null ? result.ToArray() : [];
    }

    static (int First, int Last) Range(string s)
    {
        int dash = s.IndexOf('-');
        return dash < 0 ? (Hex(s), Hex(s)) : (Hex(s[..dash]), Hex(s[(dash + 1)..]));
    }

    static int Hex(string s) => int.Parse(s, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
}
