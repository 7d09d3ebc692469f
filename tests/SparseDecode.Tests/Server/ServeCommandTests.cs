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
    public void BusyPortIsOneSentenceWithoutAStackTrace()
    {
        var busy = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        busy.Start();
        try
        {
            int port = ((System.Net.IPEndPoint)busy.LocalEndpoint).Port;
            foreach (string[] extra in new[] { Array.Empty<string>(), ["--quiet"] })
            {
                var (code, stdout, stderr) = CliTests.Run(["serve", "--model", Fixtures.BundledModel, "--port", port.ToString(), .. extra]);
                Assert.Equal(1, code);
                Assert.Equal($"error: Cannot listen on 127.0.0.1:{port}: it is already in use.", stderr.Trim());
                Assert.DoesNotContain("   at ", stdout);
            }
        }
        finally
        {
            busy.Stop();
        }
    }

    [Fact]
    public void HostThatIsNotThisMachinesIsOneSentence()
    {
        // 192.0.2.0/24 is reserved for documentation: never an address of a real machine.
        var (code, stdout, stderr) = CliTests.Run("serve", "--model", Fixtures.BundledModel, "--host", "192.0.2.7", "--port", "0");
        Assert.Equal(1, code);
        Assert.Equal("error: Cannot listen on 192.0.2.7:0: the address is not one of this machine's (use 0.0.0.0 for all of them).", stderr.Trim());
        Assert.DoesNotContain("   at ", stdout);
    }

    [Fact]
    public void HelpShowsDefaultsAUserCanType()
    {
        string stdout = CliTests.Help("serve");
        string line = stdout.Split('\n').Single(l => l.TrimStart().StartsWith("--max-per-client", StringComparison.Ordinal));
        Assert.DoesNotContain("-1", line);
        Assert.Contains("Default: half of --max-batch.", line);
        Assert.Contains("also written gpu", stdout);
        var (bad, _, stderr) = CliTests.Run("serve", "--model", Fixtures.BundledModel, "--port", "0", "--max-per-client", "-2");
        Assert.Equal(1, bad);
        Assert.Equal("error: --max-per-client must be ≥ 0 (0: no cap), got -2.", stderr.Trim());
    }

    [Fact]
    public void GpuCommandsNameThePrefillPrecisionAsTheOthersDo()
    {
        foreach (string command in new[] { "gpu-check", "gpu-prefill", "generate", "serve" })
            Assert.Contains("--gpu-prefill", CliTests.Help(command));
        foreach (string command in new[] { "generate", "serve", "eval", "bench" })
            Assert.Contains("--gpu-decode", CliTests.Help(command));
    }

    [Fact]
    public void AContextBeyondTheModelsIsRefused()
    {
        var (code, _, stderr) = CliTests.Run("serve", "--model", Fixtures.BundledModel, "--port", "0", "--context", "100000");
        Assert.Equal(1, code);
        Assert.Equal("error: --context 100000 exceeds the model's context of 32768 tokens.", stderr.Trim());
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
