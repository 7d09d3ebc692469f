using System.Net;
using System.Net.Sockets;
using SparseDecode.Selection;

namespace SparseDecode.Tests.Cli;

/// <summary>What a new user meets first: every mistake is one sentence on stderr and a non-zero exit code, the
/// help names the program as installed, its examples work, and `methods` lists what --param accepts.</summary>
[Collection("console")]
public class CliErrorTests
{
    private static void OneSentence((int code, string stdout, string stderr) r, string expected)
    {
        Assert.NotEqual(0, r.code);
        Assert.Single(r.stderr.Trim().Split('\n'));
        Assert.Equal("error: " + expected, r.stderr.Trim());
    }

    [Fact]
    public void PromptFileThatIsADirectoryIsOneSentence()
    {
        using var tmp = new Fixtures.TempDir();
        OneSentence(CliTests.Run("generate", "--model", Fixtures.Model("llama3-gqa"), "--prompt-file", tmp.Path),
            $"--prompt-file {tmp.Path} is a directory; give a file.");
        OneSentence(CliTests.Run("generate", "--model", Fixtures.Model("llama3-gqa"), "--prompt-file", tmp.File("absent.txt")),
            $"--prompt-file {tmp.File("absent.txt")}: file not found.");
    }

    [Theory]
    [InlineData("score", "--token-ids", "1,2")]
    [InlineData("generate", "--prompt", "hi")]
    [InlineData("inspect")]
    [InlineData("bench")]
    public void MissingModelSaysTheSameInEveryCommand(params string[] args)
    {
        OneSentence(CliTests.Run([args[0], "--model", "/nonexistent/model", .. args[1..]]), "/nonexistent/model: model directory not found.");
    }

    [Fact]
    public void ThreadsAreTakenByEveryCommandAndReportedByBench()
    {
        var (code, stdout, stderr) = CliTests.Run("bench", "--model", Fixtures.Model("llama3-gqa"), "--context", "8", "--steps", "2", "--threads", "1", "--json");
        Assert.True(code == 0, stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(stdout);
        Assert.Equal(1, doc.RootElement.GetProperty("threads").GetInt32());
        var (zero, _, zeroErr) = CliTests.Run("inspect", "--threads", "0");
        Assert.NotEqual(0, zero);
        Assert.Equal("error: --threads must be at least 1.", zeroErr.Trim());
    }

    [Theory]
    [InlineData("error: --threads must be at least 1.", "--threads", "0", "methods")]
    [InlineData("error: sparsedecode methods has no option --bogus (sparsedecode methods --help lists its options).", "methods", "--bogus")]
    [InlineData("error: 'generat' is not a sparsedecode command; did you mean 'generate'?", "generat", "--prompt", "x")]
    [InlineData("error: 'frobnicate' is not a sparsedecode command (sparsedecode --help lists them).", "frobnicate")]
    [InlineData("error: --max-tokens takes an integer, got 'abc'.", "generate", "--prompt", "x", "--max-tokens", "abc")]
    [InlineData("error: sparsedecode bench has no option --report (sparsedecode bench --help lists its options).", "bench", "--method", "tidal", "--report")]
    public void CommandLinesThatDoNotParseAreOneSentence(string expected, params string[] args)
    {
        var (code, stdout, stderr) = CliTests.Run(args);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Equal(expected, stderr.Trim());
    }

    [Theory]
    [InlineData("Give --prompt or --prompt-file, not both.", "generate", "--prompt", "x", "--prompt-file", "PROMPT_FILE")]
    [InlineData("--budget applies to a sparse --method; without one, attention is dense.", "generate", "--prompt", "x", "--budget", "5%")]
    [InlineData("--param applies to a sparse --method; without one, attention is dense.", "serve", "--port", "0", "--param", "sinks=4")]
    [InlineData("--gpu-prefill sets the GPU's prefill; it needs --device cuda.", "generate", "--prompt", "x", "--gpu-prefill", "bf16")]
    [InlineData("--gpu-prefill sets the GPU's prefill; it needs --device cuda.", "bench", "--gpu-prefill", "bf16")]
    [InlineData("--gpu-decode sets the GPU's decode steps; it needs --device cuda.", "bench", "--gpu-decode", "bf16")]
    [InlineData("--prefill-pacing takes on or off, not 'maybe'.", "serve", "--port", "0", "--prefill-pacing", "maybe")]
    [InlineData("--gpu-decode sets the GPU's decode steps; it needs --device cuda.", "serve", "--port", "0", "--gpu-decode", "bf16")]
    [InlineData("--kv-type q8 is for the CPU; the GPU's KV cache is bf16.", "generate", "--prompt", "x", "--device", "cuda", "--kv-type", "q8")]
    [InlineData("--kv-cache-gb must be between 0 and 1000000, got -1.", "serve", "--port", "0", "--kv-cache-gb", "-1")]
    [InlineData("--kv-cache-gb bounds the CPU's KV caches; the GPU sizes its pool from its free memory.", "serve", "--port", "0", "--device", "cuda", "--kv-cache-gb", "4")]
    [InlineData("--batch must be between 1 and 256, got 100000.", "bench", "--batch", "100000")]
    [InlineData("--report-only writes the stored results again; it runs nothing, so --fresh does not apply.", "eval", "--report-only", "--fresh")]
    [InlineData("--report-only writes the stored results again; it runs nothing, so --methods does not apply.", "eval", "--report-only", "--methods", "dense")]
    public void ConflictingOptionsAreRefused(string expected, params string[] args)
    {
        using var tmp = new Fixtures.TempDir();
        File.WriteAllText(tmp.File("prompt.txt"), "hi");
        OneSentence(CliTests.Run([.. args.Select(a => a == "PROMPT_FILE" ? tmp.File("prompt.txt") : a), "--model", Fixtures.BundledModel]), expected);
    }

    [Fact]
    public void PromptFileDashReadsStandardInput()
    {
        string[] common = ["generate", "--model", Fixtures.BundledModel, "--max-tokens", "4", "--temperature", "0", "--json"];
        var fromOption = CliTests.Run([.. common, "--prompt", "def add(a, b):\n"]);
        var oldIn = Console.In;
        Console.SetIn(new StringReader("def add(a, b):\n"));
        try
        {
            var fromStdin = CliTests.Run([.. common, "--prompt-file", "-"]);
            Assert.Equal(0, fromStdin.code);
            string Ids(string stdout) => System.Text.Json.JsonDocument.Parse(stdout).RootElement.GetProperty("token_ids").ToString();
            Assert.Equal(Ids(fromOption.stdout), Ids(fromStdin.stdout));
            Assert.Contains("\"prompt_tokens\": 7", fromStdin.stdout);
        }
        finally
        {
            Console.SetIn(oldIn);
        }
    }

    [Fact]
    public void ExceptionParameterNamesDoNotLeak() =>
        OneSentence(CliTests.Run("score", "--model", Fixtures.BundledModel, "--token-ids", "1,99999"), "Token id 99999 is outside the vocabulary of 8192.");

    [Fact]
    public void EvalOutThatIsAFileIsOneSentence()
    {
        using var tmp = new Fixtures.TempDir();
        File.WriteAllText(tmp.File("results"), "");
        OneSentence(CliTests.Run("eval", "--model", Fixtures.BundledModel, "--quick", "--out", tmp.File("results")),
            $"--out {tmp.File("results")} is a file; give a directory for the results.");
    }

    [Fact]
    public void ModelThatIsAFileIsOneSentence()
    {
        using var tmp = new Fixtures.TempDir();
        File.WriteAllText(tmp.File("x"), "");
        var r = CliTests.Run("inspect", "--model", tmp.File("x"));
        Assert.NotEqual(0, r.code);
        Assert.StartsWith($"error: {tmp.File("x")}: is a file; --model takes a model directory", r.stderr);
    }

    [Fact]
    public void TextAndTokenIdsTogetherConflict()
    {
        OneSentence(CliTests.Run("score", "--model", Fixtures.Model("llama3-gqa"), "--text", "hi", "--token-ids", "1,2"),
            "Give --token-ids or --text, not both.");
    }

    [Fact]
    public void HelpNamesTheProgramSparsedecode()
    {
        var (code, stdout, _) = CliTests.Run("--help");
        Assert.Equal(0, code);
        Assert.Contains("Usage:\n  sparsedecode [command] [options]", stdout.ReplaceLineEndings("\n"));
        Assert.Contains("  sparsedecode generate [options]", CliTests.Run("generate", "--help").stdout);
        Assert.DoesNotContain("SparseDecode.Cli", stdout);
    }

    [Fact]
    public void TheParamExampleInTheHelpIsAccepted()
    {
        string help = CliTests.Run("generate", "--help").stdout.ReplaceLineEndings(" ");
        var m = System.Text.RegularExpressions.Regex.Match(help, @"e\.g\. --method (\w+) --param (\w+)=(\w+)");
        Assert.True(m.Success, help);
        SelectorSpec.Parse(m.Groups[1].Value, "256", new Dictionary<string, string> { [m.Groups[2].Value] = m.Groups[3].Value });
        var (code, _, stderr) = CliTests.Run("generate", "--prompt", "a b", "--max-tokens", "2",
            "--method", m.Groups[1].Value, "--budget", "4", "--param", $"{m.Groups[2].Value}={m.Groups[3].Value}");
        Assert.True(code == 0, stderr);
    }

    [Fact]
    public void MethodsListsEveryMethodWithItsParametersAndDefaults()
    {
        var (code, stdout, _) = CliTests.Run("methods");
        Assert.Equal(0, code);
        foreach (string method in SelectorSpec.Methods) Assert.Contains($"\n{method}: ", "\n" + stdout.ReplaceLineEndings("\n"));
        Assert.Contains("sinks", stdout);
        Assert.Contains("(default ", stdout);
    }

    [Fact]
    public void MethodsShowsTheSettingsAModelStores()
    {
        var (code, stdout, stderr) = CliTests.Run("methods", "--model", Fixtures.BundledModel);
        Assert.True(code == 0, stderr);
        string file = Path.Combine(Fixtures.BundledModel, MethodDefaults.FileName);
        string reselect = stdout.Split('\n').Single(l => l.StartsWith("  reselect", StringComparison.Ordinal));
        Assert.EndsWith($"(default 13 of 32 layers); this model: 5 ({file})", reselect.TrimEnd());
        int stored = MethodDefaults.Load(Fixtures.BundledModel).Scoped().Count(kv => SelectorSpec.Methods.Contains(kv.Key.Split('.')[0]));
        Assert.Equal(stored, stdout.Split('\n').Count(l => l.Contains("this model:", StringComparison.Ordinal)));

        var (plain, plainOut, _) = CliTests.Run("methods", "--model", Fixtures.Model("llama3-gqa"));
        Assert.Equal(0, plain);
        Assert.DoesNotContain("this model:", plainOut);
    }
}
