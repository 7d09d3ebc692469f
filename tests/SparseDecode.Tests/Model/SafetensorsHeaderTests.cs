using System.Text;
using SparseDecode.Model;

namespace SparseDecode.Tests.ModelChecks;

/// <summary>Crafted safetensors headers: overlapping, duplicated, wrapping or oversized entries are refused with a
/// sentence naming the file and the tensor.</summary>
public class SafetensorsHeaderTests
{
    /// <summary>Writes an 8-byte length, the header JSON and `data` zero bytes; returns the path.</summary>
    internal static string Write(Fixtures.TempDir dir, string header, int data)
    {
        string path = dir.File("model.safetensors");
        // Latin-1 for \xNN escapes, so that a test can put bytes that are not UTF-8 into the header.
        var json = header.Any(c => c is >= '\u0080' and <= '\u00ff') ? Encoding.Latin1.GetBytes(header) : Encoding.UTF8.GetBytes(header);
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((ulong)json.Length));
        f.Write(json);
        f.Write(new byte[data]);
        return path;
    }

    private static string Refused(string header, int data)
    {
        using var dir = new Fixtures.TempDir();
        string path = Write(dir, header, data);
        var e = Assert.Throws<ModelFormatException>(() => { using var _ = SafetensorsFile.Open(path); });
        Assert.StartsWith(path + ": ", e.Message);
        return e.Message;
    }

    [Fact]
    public void OverlappingRangesAreRefused() => Assert.Contains("'a' [0, 16) and 'b' [8, 24) overlap",
        Refused("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""", 24));

    [Fact]
    public void ARangeInsideAnotherIsRefused() => Assert.Contains("overlap",
        Refused("""{"big":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"in":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 32));

    [Fact]
    public void AWrappingByteCountIsRefused() => Assert.Contains("tensor 'x' has a shape whose byte count overflows 64 bits",
        Refused("""{"x":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}""", 0));

    [Fact]
    public void AWrappingProductOfDimensionsIsRefused() => Assert.Contains("overflows 64 bits",
        Refused("""{"x":{"dtype":"BF16","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""", 0));

    [Fact]
    public void AHugeHeaderLengthInAFileThatLongIsRefused()
    {
        // A sparse file makes the 2^31+16 header length fit inside the file without writing 2 GB.
        using var dir = new Fixtures.TempDir();
        string path = dir.File("model.safetensors");
        using (var f = File.Create(path))
        {
            f.Write(BitConverter.GetBytes((1UL << 31) + 16));
            f.Write("{}"u8);
            f.SetLength((1L << 31) + 32);
        }
        var e = Assert.Throws<ModelFormatException>(() => { using var _ = SafetensorsFile.Open(path); });
        Assert.Equal($"{path}: header length 2147483664 exceeds the format's limit of 100000000 bytes.", e.Message);
    }

    /// <summary>Found by the fuzz smoke run: a name that is not UTF-8 escaped as an InvalidOperationException.</summary>
    [Fact]
    public void InvalidUtf8InTheHeaderIsRefused()
    {
        Assert.Contains("not valid UTF-8", Refused("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
        Assert.Contains("lone surrogate", Refused("{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
    }

    [Fact]
    public void DuplicateNamesAreRefused() => Assert.Contains("tensor 'a' appears twice",
        Refused("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8));

    [Fact]
    public void MalformedEntriesNameTheTensorAndTheFields()
    {
        Assert.Contains("tensor 'a' lacks one of 'dtype', 'shape' and 'data_offsets'", Refused("""{"a":{"dtype":"F32","shape":[1]}}""", 4));
        Assert.Contains("tensor 'a' has a malformed header entry: 'dtype' must be a string", Refused("""{"a":{"dtype":5,"shape":[1],"data_offsets":[0,4]}}""", 4));
        Assert.Contains("tensor 'a' has a malformed header entry", Refused("""{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}""", 4));
    }

    [Fact]
    public void AdjacentAndEmptyRangesAreAccepted()
    {
        using var dir = new Fixtures.TempDir();
        string path = Write(dir, """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}""", 12);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(["a", "e", "b"], f.TensorNames);
    }
}
