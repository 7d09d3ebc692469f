using SparseDecode.Tests.Cli;

namespace SparseDecode.Tests.Evaluation;

/// <summary>`sparsedecode eval` refuses bad grids with one sentence and exit code 1, and documents its options.</summary>
[Collection("console")]
public class EvalCliTests
{
    [Theory]
    [InlineData("--tasks", "passkey,needles", "Unknown task 'needles'")]
    [InlineData("--methods", "dense,magic", "Unknown method 'magic'")]
    [InlineData("--budgets", "0", "Budget '0'")]
    [InlineData("--budgets", "150%", "Budget '150%'")]
    [InlineData("--budgets", "5000", "Budget 5000 tokens is not below")]
    [InlineData("--contexts", "65536", "Context 65536 is longer than the model's maximum of 32768 tokens.")]
    [InlineData("--contexts", "1k,x", "--contexts: 'x' is not a whole number")]
    [InlineData("--param", "window=3", "No method in the grid has a parameter 'window'")]
    [InlineData("--param", "tidal.reselect=-4", "Parameter 'reselect' of method 'tidal' must be")]
    [InlineData("--speculate", "0", "--speculate takes a draft length from 1 to 16 tokens or 'auto', not '0'.")]
    [InlineData("--speculate", "4 --methods dense", "--speculate drafts with the grid's sparse methods; with --methods dense alone there is nothing to draft.")]
    [InlineData("--speculate", "4 --tasks ppl", "--speculate compares generated answers with dense decoding's, and ppl generates none")]
    [InlineData("--speculate", "4 --device cuda", "eval --speculate checks that speculative answers are dense decoding's token for token")]
    public void BadGridIsOneSentenceAndExitCodeOne(string option, string value, string message)
    {
        using var tmp = new Fixtures.TempDir();
        string[] context = option == "--contexts" ? [] : ["--contexts", "4096"];
        // a value with spaces is the option's value and more options after it
        var (code, stdout, stderr) = CliTests.Run(["eval", "--model", Fixtures.BundledModel, .. context, option, .. value.Split(' '), "--out", tmp.Path]);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        string line = Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith("error: ", line);
        Assert.Contains(message, line);
        Assert.False(File.Exists(tmp.File("cells.jsonl")));
    }

    [Fact]
    public void StoredSettingsOfMethodsOutsideTheGridDoNotStopIt()
    {
        // the bundled model's sparse_methods.json holds tidal, prhs and lfps settings; a dense-only grid must run
        Assert.NotEmpty(SparseDecode.Selection.MethodDefaults.Load(Fixtures.BundledModel).Scoped());
        using var tmp = new Fixtures.TempDir();
        var (code, _, stderr) = CliTests.Run(["eval", "--model", Fixtures.BundledModel, "--methods", "dense", "--contexts", "512",
            "--tasks", "passkey", "--samples", "1", "--no-heatmap", "--no-speed-sweep", "--out", tmp.Path]);
        Assert.True(code == 0, stderr);
        Assert.Single(File.ReadAllLines(tmp.File("cells.jsonl")));
    }

    /// <summary>Sample i of n puts its needles at depth (i + 0.5)/n: with another --samples, sample 0 is another
    /// prompt, and its stored cell (same key) must run again rather than be paired with the new grid's cells.</summary>
    [Fact]
    public void MoreSamplesRunTheSamplesWhoseDepthMovedAgain()
    {
        using var tmp = new Fixtures.TempDir();
        string[] grid = ["eval", "--model", Fixtures.BundledModel, "--methods", "dense", "--contexts", "512", "--tasks", "passkey",
            "--no-heatmap", "--no-speed-sweep", "--out", tmp.Path];
        var (code, _, stderr) = CliTests.Run([.. grid, "--samples", "1"]);
        Assert.True(code == 0, stderr);
        (code, _, stderr) = CliTests.Run([.. grid, "--samples", "2"]);
        Assert.True(code == 0, stderr);
        // depth 0.5 (one sample), then 0.25 and 0.75: both of the second grid's samples ran
        Assert.Equal(3, File.ReadAllLines(tmp.File("cells.jsonl")).Length);
        var stored = SparseDecode.Evaluation.StoredReport.Load(tmp.Path);
        Assert.Equal([0.25, 0.75], stored.Results.Cells.Select(c => c.Depth!.Value));
        Assert.All(stored.Results.Cells, c => Assert.NotNull(c.PromptFingerprint));
    }

    /// <summary>`eval --tasks lcc` runs code completion and its report gives edit similarity and exact match with
    /// their paired differences to dense.</summary>
    [Fact]
    public void CodeCompletionGridReportsEditSimilarityAndExactMatch()
    {
        using var tmp = new Fixtures.TempDir();
        var (code, _, stderr) = CliTests.Run(["eval", "--model", Fixtures.BundledModel, "--methods", "dense,streaming", "--budgets", "64",
            "--contexts", "512", "--tasks", "lcc", "--samples", "2", "--timing-steps", "4", "--fidelity-steps", "2", "--no-heatmap", "--no-speed-sweep", "--out", tmp.Path]);
        Assert.True(code == 0, stderr);
        Assert.Equal(4, File.ReadAllLines(tmp.File("cells.jsonl")).Length);
        string report = File.ReadAllText(tmp.File("report.md"));
        Assert.Contains("### Code completion", report);
        Assert.Contains("| method | budget | edit similarity % | Δ vs dense [95% CI] | p | exact match % | Δ vs dense [95% CI] | p |", report);
        Assert.Contains("| streaming | 64 |", report[report.IndexOf("### Code completion", StringComparison.Ordinal)..]);
    }

    [Fact]
    public void HelpDocumentsEveryOption()
    {
        var (code, stdout, _) = CliTests.Run("eval", "--help");
        Assert.Equal(0, code);
        foreach (string o in new[] { "--model", "--methods", "--budgets", "--contexts", "--tasks", "--samples", "--seed", "--param", "--kv-type",
                     "--out", "--quick", "--fresh", "--timing-steps", "--fidelity-steps", "--ppl-tokens", "--heatmap-layer", "--heatmap-head", "--no-heatmap", "--no-speed-sweep", "--speculate" })
            Assert.Contains(o, stdout);
        Assert.Contains("passkey, multikey, multivalue, multiquery, vartrack, cwe, lcc, ppl", stdout);
    }
}
