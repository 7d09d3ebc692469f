using SparseDecode.Tests.Cli;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>`sparsedecode serve` refuses bad options with one error line and a non-zero exit, before listening.</summary>
[Collection("console")]
public class ServeCommandTests
{
    [Fact]
    public void UnknownMethodIsOneLineError()
    {
        var (code, _, stderr) = CliTests.Run("serve", "--model", Fixtures.BundledModel, "--port", "0", "--method", "nope");
        Assert.Equal(1, code);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith("error: Unknown method 'nope'", stderr);
    }

    [Fact]
    public void BadPortIsOneLineError()
    {
        var (code, _, stderr) = CliTests.Run("serve", "--model", Fixtures.BundledModel, "--port", "70000");
        Assert.Equal(1, code);
        Assert.StartsWith("error: --port must be in 0..65535", stderr);
    }

    [Fact]
    public void ModelWithoutTokenizerIsOneLineError()
    {
        var (code, _, stderr) = CliTests.Run("serve", "--model", Fixtures.Model("llama3-gqa"), "--port", "0");
        Assert.Equal(1, code);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith("error: ", stderr);
        Assert.Contains("tokenizer.json", stderr);
    }
}
