using System.Text.Json;

namespace SparseDecode.Tests.Cli;

/// <summary>`--speculate K` on generate and bench: bad input is one sentence; generate's output is dense decoding's;
/// bench reports the three ways side by side.</summary>
[Collection("console")]
public class SpeculateCliTests
{
    [Theory]
    [InlineData("error: --speculate takes a draft length from 1 to 16 tokens or 'auto', not '0'.", "generate", "--prompt", "x", "--method", "tidal", "--speculate", "0")]
    [InlineData("error: --speculate takes a draft length from 1 to 16 tokens or 'auto', not '17'.", "bench", "--method", "tidal", "--speculate", "17")]
    [InlineData("error: --speculate drafts with a sparse --method; with --method dense there is nothing to draft.", "generate", "--prompt", "x", "--speculate", "4")]
    [InlineData("error: --speculate drafts with a sparse --method; with --method dense there is nothing to draft.", "bench", "--speculate", "auto")]
    public void BadSpeculationIsOneSentence(string expected, params string[] args)
    {
        var (code, _, stderr) = CliTests.Run([.. args, "--model", Fixtures.Model("llama3-gqa")]);
        Assert.NotEqual(0, code);
        Assert.Equal(expected, stderr.Trim());
    }

    [Fact]
    public void GenerateSpeculativelyPrintsDenseDecodingsTokens()
    {
        string[] common = ["generate", "--model", Fixtures.BundledModel, "--prompt", "a b c d e f g", "--max-tokens", "20", "--json"];
        var dense = CliTests.Run(common);
        var spec = CliTests.Run([.. common, "--method", "lfps", "--budget", "4", "--speculate", "3"]);
        Assert.True(spec.code == 0, spec.stderr);
        using var d = JsonDocument.Parse(dense.stdout);
        using var s = JsonDocument.Parse(spec.stdout);
        Assert.Equal(d.RootElement.GetProperty("token_ids").ToString(), s.RootElement.GetProperty("token_ids").ToString());
        var sp = s.RootElement.GetProperty("speculation");
        Assert.True(sp.GetProperty("passes").GetInt32() > 0);
        Assert.True(sp.GetProperty("exact").GetBoolean());
    }

    /// <summary>`--speculate` without a method, or without K, uses the draft `calibrate --speculate` stored beside the
    /// model; the output is still dense decoding's. Where none is stored, one sentence says what to give.</summary>
    [Fact]
    public void SpeculateWithoutMethodOrDraftLengthUsesTheStoredDraft()
    {
        using var tmp = new Fixtures.TempDir();
        foreach (string f in Directory.GetFiles(Fixtures.BundledModel)) File.Copy(f, tmp.File(Path.GetFileName(f)));
        string[] common = ["generate", "--model", tmp.Path, "--prompt", "a b c d e f g", "--max-tokens", "20", "--json"];
        var none = CliTests.Run([.. common, "--method", "tidal", "--speculate"]);
        Assert.Equal(1, none.code);
        Assert.StartsWith("error: --speculate without a draft length uses the one `calibrate --speculate` stored for the model", none.stderr.Trim());
        Assert.EndsWith("has none: give K (1 to 16) or auto.", none.stderr.Trim());
        SparseDecode.Selection.MethodDefaults.SaveSpeculation(tmp.Path, new("quest", "8", "3"), new() { ["chosen"] = "quest,3" });
        var dense = CliTests.Run(common);
        Assert.True(dense.code == 0, dense.stderr);
        using var d = JsonDocument.Parse(dense.stdout);
        foreach (var (args, method, draft) in new (string[], string, string)[]
                 { (["--speculate"], "quest", "3"), (["--speculate", "auto"], "quest", "auto"), (["--method", "lfps", "--budget", "8", "--speculate"], "lfps", "3") })
        {
            var spec = CliTests.Run([.. common, .. args]);
            Assert.True(spec.code == 0, spec.stderr);
            using var s = JsonDocument.Parse(spec.stdout);
            Assert.Equal(d.RootElement.GetProperty("token_ids").ToString(), s.RootElement.GetProperty("token_ids").ToString());
            var sp = s.RootElement.GetProperty("speculation");
            Assert.Equal(method, sp.GetProperty("method").GetString());
            Assert.Equal(draft, sp.GetProperty("draft").GetString());
            Assert.Equal("8", sp.GetProperty("budget").GetString());
        }
    }

    [Fact]
    public void BenchReportsDenseSparseAndSpeculativeInOneRun()
    {
        var (code, stdout, stderr) = CliTests.Run("bench", "--model", Fixtures.Model("llama3-gqa"), "--context", "40", "--steps", "12",
            "--method", "tidal", "--budget", "4", "--speculate", "auto", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        foreach (string key in (string[])["dense_tokens_per_second", "sparse_tokens_per_second", "speculative_tokens_per_second", "mean_accepted"])
            Assert.True(root.GetProperty(key).GetDouble() >= 0, key);
        Assert.True(root.GetProperty("lossless").GetBoolean());
        Assert.Equal("auto", root.GetProperty("speculate").GetString());
    }
}
