using SparseDecode.Selection;

namespace SparseDecode.Tests.Cli;

/// <summary>`calibrate`'s table and where it may write.</summary>
[Collection("console")]
public class CalibrateCliTests
{
    [Fact]
    public void LfpsTableNamesThePairAsItsRowsDoAndMarksRowsOverTheCap()
    {
        var (code, stdout, stderr) = CliTests.Run("calibrate", "--model", Fixtures.BundledModel, "--method", "lfps", "--dry-run", "--context", "768", "--prompts", "1");
        Assert.True(code == 0, stderr);
        var rows = stdout.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal)).ToList();
        Assert.StartsWith("| history, radius | answer log p |", rows[0]);
        Assert.StartsWith("| 1, 0", rows[1]);
        foreach (string row in rows.Skip(1))
        {
            double share = double.Parse(row.Split('|')[^2].Trim().TrimEnd('%').Trim(), System.Globalization.CultureInfo.InvariantCulture) / 100;
            bool chosen = row.Contains("(chosen", StringComparison.Ordinal);
            Assert.Equal(share > 0.12 && !chosen, row.Contains("(over the cap)", StringComparison.Ordinal));
        }
        Assert.Single(rows, r => r.Contains("(chosen", StringComparison.Ordinal));
    }

    /// <summary>calibrate --speculate prints one row per draft and K, marks the choice, and stores it.</summary>
    [Fact]
    public void SpeculateComparesDraftsAndStoresTheChoice()
    {
        using var tmp = new Fixtures.TempDir();
        foreach (string f in Directory.GetFiles(Fixtures.BundledModel)) File.Copy(f, tmp.File(Path.GetFileName(f)));
        var (code, stdout, stderr) = CliTests.Run("calibrate", "--model", tmp.Path, "--speculate", "--draft-methods", "tidal,streaming",
            "--draft-lengths", "2,4", "--context", "768", "--prompts", "1", "--tokens", "12");
        Assert.True(code == 0, stderr);
        var rows = stdout.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal)).ToList();
        Assert.StartsWith("| draft | K | kept per pass |", rows[0]);
        Assert.Equal(5, rows.Count);
        Assert.All(rows.Skip(1), r => Assert.EndsWith("| 1/1 |", r));
        string chosen = Assert.Single(rows, r => r.Contains("(chosen)", StringComparison.Ordinal));
        var stored = MethodDefaults.Load(tmp.Path).Speculation!;
        Assert.StartsWith($"| {stored.Method} (chosen) | {stored.Tokens} |", chosen);
        Assert.Equal("2%", stored.Budget);
        var bad = CliTests.Run("calibrate", "--model", tmp.Path, "--speculate", "--draft-methods", "dense", "--dry-run");
        Assert.Equal(1, bad.code);
        Assert.StartsWith("error: --draft-methods: 'dense' is not a sparse method;", bad.stderr.Trim());
        bad = CliTests.Run("calibrate", "--model", tmp.Path, "--draft-lengths", "2", "--dry-run");
        Assert.Equal("error: --draft-lengths applies to calibrate --speculate.", bad.stderr.Trim());
    }

    [Fact]
    public void WithoutAModelItDoesNotWriteIntoTheBuildOutput()
    {
        var (code, _, stderr) = CliTests.Run("calibrate", "--method", "tidal");
        Assert.Equal(1, code);
        Assert.StartsWith($"error: calibrate would write {MethodDefaults.FileName} into ", stderr);
        Assert.EndsWith("the bundled model's copy beside the program, which the next build or update replaces; give --model with a model directory you keep (or --dry-run).", stderr.Trim());
    }
}
