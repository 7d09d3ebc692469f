using System.Text.Json;
using SparseDecode.Engine;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Cli;

/// <summary>The command line, run in-process: exact output forms and one-line errors with non-zero exit codes.</summary>
[Collection("console")]
public class CliTests
{
    /// <summary>The help page of `command`, which must exit 0.</summary>
    internal static string Help(string command)
    {
        var (code, stdout, stderr) = Run(command, "--help");
        Assert.True(code == 0, stderr);
        return stdout;
    }

    internal static (int code, string stdout, string stderr) Run(params string[] args)
    {
        var oldOut = Console.Out;
        var oldErr = Console.Error;
        var so = new StringWriter();
        var se = new StringWriter();
        Console.SetOut(so);
        Console.SetError(se);
        try
        {
            int code = SparseDecode.Cli.Program.Main(args);
            return (code, so.ToString(), se.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Fact]
    public void ScoreJsonMatchesTheReference()
    {
        string dir = Fixtures.Model("llama3-gqa");
        var reference = Fixtures.LoadReference(dir);
        var (code, stdout, stderr) = Run("score", "--model", dir, "--token-ids", string.Join(",", reference.TokenIds), "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var lp = doc.RootElement.GetProperty("token_logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(reference.TokenIds.Length - 1, lp.Length);
        for (int i = 0; i < lp.Length; i++) Assert.True(Math.Abs(lp[i] - reference.TokenLogprobs[i]) <= 1e-3);
    }

    [Fact]
    public void MissingModelIsOneLineError()
    {
        var (code, stdout, stderr) = Run("score", "--model", "/nonexistent/model", "--token-ids", "1,2,3");
        Assert.NotEqual(0, code);
        Assert.Equal("", stdout);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith("error: /nonexistent/model", stderr);
    }

    [Fact]
    public void MalformedCheckpointIsOneLineError()
    {
        using var tmp = new Fixtures.TempDir();
        foreach (string f in Directory.GetFiles(Fixtures.Model("qwen2-bias-tied")))
            File.Copy(f, tmp.File(Path.GetFileName(f)));
        File.WriteAllText(tmp.File("config.json"), "{not json");
        var (code, _, stderr) = Run("score", "--model", tmp.Path, "--token-ids", "1,2,3");
        Assert.NotEqual(0, code);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains("config.json: not valid JSON", stderr);
    }

    [Fact]
    public void PromptLongerThanContextIsOneLineError()
    {
        string dir = Fixtures.Model("llama3-gqa");
        using var model = Transformer.Load(dir);
        int tooMany = model.Config.MaxPositions + 5;
        var ids = string.Join(",", Enumerable.Range(0, tooMany).Select(i => i % 100));
        var (code, _, stderr) = Run("score", "--model", dir, "--token-ids", ids);
        Assert.NotEqual(0, code);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Contains($"needs {tooMany} positions but the model's context is {model.Config.MaxPositions} tokens", stderr);
    }

    [Fact]
    public void BadTokenIdIsOneLineError()
    {
        var (code, _, stderr) = Run("score", "--model", Fixtures.Model("llama3-gqa"), "--token-ids", "1,x,3");
        Assert.NotEqual(0, code);
        Assert.Contains("'x' is not an integer token id", stderr);
    }
}

[CollectionDefinition("console", DisableParallelization = true)]
public class ConsoleCollection;
