using System.Text;

namespace SparseDecode.Tokenization;

/// <summary>GPT-2's reversible byte-to-character table: every byte gets a printable character so that BPE
/// vocabularies can be stored as text. Printable Latin-1 bytes map to themselves; the other 68 bytes map to
/// U+0100 upward, in byte order.</summary>
internal static class ByteLevelMapping
{
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>Indexed by character; -1 for characters that are not in the table. Every mapped character is
    /// below U+0144, so a small array replaces a dictionary lookup in the hot path.</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    static char[] BuildByteToChar()
    {
        var table = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + next++);
        }
        return table;
    }

    static short[] BuildCharToByte()
    {
        var table = new short[512];
        Array.Fill(table, (short)-1);
        for (int b = 0; b < 256; b++) table[ByteToChar[b]] = (short)b;
        return table;
    }

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, each replaced by its table character.</summary>
    public static string Encode(string text)
    {
        int byteCount = Encoding.UTF8.GetByteCount(text);
        if (byteCount <= 512)
        {
            // Pre-tokens are short; keep the common case free of temporary arrays.
            Span<byte> bytes = stackalloc byte[byteCount];
            Span<char> chars = stackalloc char[byteCount];
            Encoding.UTF8.GetBytes(text, bytes);
            for (int i = 0; i < byteCount; i++) chars[i] = ByteToChar[bytes[i]];
            return new string(chars);
        }
        byte[] all = Encoding.UTF8.GetBytes(text);
        return string.Create(all.Length, all, static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = ByteToChar[src[i]];
        });
    }

    /// <summary>Appends the bytes a byte-level token stands for. Like Hugging Face, a token holding any character
    /// outside the table contributes its own UTF-8 bytes instead (added tokens are stored verbatim).</summary>
    public static void AppendBytes(string token, List<byte> bytes)
    {
        foreach (char c in token)
        {
            if (c >= CharToByte.Length || CharToByte[c] < 0)
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(token));
                return;
            }
        }
        foreach (char c in token) bytes.Add((byte)CharToByte[c]);
    }
}
