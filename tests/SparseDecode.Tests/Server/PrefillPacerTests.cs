using SparseDecode.Server.Scheduling;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>The paced prefill budget against a model step: decode time D, and a prompt chunk of B tokens costing a fixed
/// a plus B / c seconds.</summary>
public class PrefillPacerTests
{
    private const double D = 0.020, A = 0.002, C = 50_000;
    private static double StepSeconds(int rows, int prompt) => (rows > 0 ? D : 0) + (prompt > 0 ? A + prompt / C : 0);

    /// <summary>Runs `steps` scheduler steps of `rows` decoding sequences and an endless prompt; returns the last budget.</summary>
    private static int Run(PrefillPacer pacer, int rows, int steps, List<int>? budgets = null)
    {
        int b = 0;
        for (int i = 0; i < steps; i++)
        {
            b = pacer.Budget(rows);
            budgets?.Add(b);
            pacer.Observe(rows, b, StepSeconds(rows, b));
        }
        return b;
    }

    [Fact]
    public void WithNothingDecodingAStepTakesTheWholeBudget()
    {
        Assert.Equal(8192, new PrefillPacer(8192).Budget(0));
        Assert.Equal(int.MaxValue, new PrefillPacer(int.MaxValue).Budget(0));
    }

    [Fact]
    public void TheFirstPacedStepDecodesAloneThenTheBudgetSettlesWhereThePrefillTakesAsLongAsTheDecode()
    {
        var pacer = new PrefillPacer(8192);
        var budgets = new List<int>();
        int last = Run(pacer, 8, 40, budgets);
        Assert.Equal(0, budgets[0]);                       // measure D first
        Assert.Equal(PrefillPacer.Granule, budgets[1]);    // then start small
        // the first measure sets the budget; after it, each step moves it by ×2 or ÷2 at most
        for (int i = 3; i < budgets.Count; i++) Assert.InRange(budgets[i], budgets[i - 1] / 2, budgets[i - 1] * 2);
        // fixed point: A + B / C = D, B = 900, in whole granules
        Assert.InRange(last, 880, 912);
        Assert.Equal(0, last % PrefillPacer.Granule);
        Assert.InRange(A + last / C, 0.9 * D, 1.1 * D);
    }

    [Fact]
    public void TheShareScalesThePrefillTimeAndTheBudgetStaysUnderItsCap()
    {
        // share 0.5: A + B / C = D / 2, B = 400
        Assert.InRange(Run(new PrefillPacer(8192, 0.5), 8, 40), 384, 416);
        Assert.Equal(512, Run(new PrefillPacer(512), 8, 40));
        Assert.Equal(4, Run(new PrefillPacer(4), 8, 40));   // a cap under one granule
    }

    [Fact]
    public void ADecodeTimeIsMeasuredAgainWhenTheRowsMoveByMoreThanAnEighthOrAfterRefreshSteps()
    {
        var pacer = new PrefillPacer(8192);
        Run(pacer, 16, 10);
        Assert.NotEqual(0, pacer.Budget(17));  // 1 of 16: within an eighth
        Assert.NotEqual(0, pacer.Budget(18));
        Assert.Equal(0, pacer.Budget(19));     // 3 of 16: measure again
        Assert.Equal(0, pacer.Budget(12));
        var refreshed = new PrefillPacer(8192);
        var budgets = new List<int>();
        Run(refreshed, 4, 2 + PrefillPacer.RefreshSteps + 1, budgets);
        Assert.Equal(0, budgets[0]);
        Assert.All(budgets.Skip(1).Take(PrefillPacer.RefreshSteps), b => Assert.NotEqual(0, b));
        Assert.Equal(0, budgets[^2]);          // after RefreshSteps paced steps
    }

    [Fact]
    public void APromptTailMovesNothingAndASlowStepHalvesTheBudgetAtMost()
    {
        var pacer = new PrefillPacer(8192);
        int settled = Run(pacer, 8, 40);
        // 16-token tails, fast or slow, leave the budget where it was
        pacer.Observe(8, 16, D + 1e-6);
        pacer.Observe(8, 16, 100 * D);
        Assert.Equal(settled, pacer.Budget(8));
        // one that ran slow lowers it, by half at most
        pacer.Observe(8, settled, D + 10 * D);
        Assert.Equal(settled / 2, pacer.Budget(8));
    }

    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(16, 0.0)]
    [InlineData(16, double.NaN)]
    public void BadSettingsAreRefused(int most, double share) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new PrefillPacer(most, share));
}
