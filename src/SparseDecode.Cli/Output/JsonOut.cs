using System.Text;
using System.Text.Json;

namespace SparseDecode.Cli.Output;

/// <summary>--json output: one JSON object on stdout, written field by field (no reflection, so the trimmed
/// single-file build writes it as the framework-dependent one does).</summary>
internal static class JsonOut
{
    public static void Write(Action<Utf8JsonWriter> fields)
    {
        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            fields(w);
            w.WriteEndObject();
        }
        Console.Out.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
        Console.Out.Flush();
    }

    /// <summary>A number, or null when it is not finite (JSON has no NaN).</summary>
    public static void Number(this Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteNull(name);
    }
}
