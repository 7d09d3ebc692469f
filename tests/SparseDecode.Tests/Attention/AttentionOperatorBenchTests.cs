using SparseDecode.Cpu;
using SparseDecode.Diagnostics;
using SparseDecode.Tests.Selection;
using Xunit;

namespace SparseDecode.Tests.Attention;

public class AttentionOperatorBenchTests
{
    private static AttentionOperatorBench Run(params string[] methods)
    {
        var bench = new AttentionOperatorBench(new AttentionOperatorBench.Options
        {
            Shape = SyntheticAttention.ConfigFor(layers: 2, heads: 4, kvHeads: 2, headDim: 16),
            Contexts = [64],
            Budgets = [0.25],
            Methods = methods,
            WarmupSteps = 1,
            Steps = 3,
        });
        bench.Run();
        return bench;
    }

    [Fact]
    public void Bookkeeping_counts_the_keys_each_method_scores_and_attends()
    {
        // steps at positions 60..63: the timed three attend contexts 62, 63 and 64 (mean 63)
        var rows = Run("dense", "oracle", "streaming").Rows;
        Assert.Equal(3, rows.Count);

        var dense = rows.Single(r => r.Method == "dense");
        Assert.Equal((1.0, 64, 0.0, 0.0, 63.0), (dense.Budget, dense.BudgetKeys, dense.SelectionMs, dense.KeysScored, dense.KeysAttended));
        Assert.True(dense.AttentionMs > 0);

        // exact top-k per query head: each of a KV head's 2 query heads scores every key; a quarter of each context
        // (ceil: 16, 16, 16) attended
        var oracle = rows.Single(r => r.Method == "oracle");
        Assert.Equal((0.25, 16, 2 * 63.0, 16.0), (oracle.Budget, oracle.BudgetKeys, oracle.KeysScored, oracle.KeysAttended));
        Assert.True(oracle.SelectionMs > 0);

        var streaming = rows.Single(r => r.Method == "streaming");
        Assert.Equal((0.0, 16.0), (streaming.KeysScored, streaming.KeysAttended));
    }

    [Fact]
    public void Ratios_compare_with_dense_and_oracle_of_the_same_context_and_budget()
    {
        AttentionOperatorBench.Row Row(string method, int n, double budget, double sel, double att) =>
            new("s", n, budget, 1, method, 1, sel, att, 0, 0, 0);
        var rows = new[]
        {
            Row("dense", 8, 1, 0, 2), Row("oracle", 8, 0.5, 1, 0.5), Row("lfps", 8, 0.5, 0.25, 0.25),
            Row("lfps", 8, 0.25, 0.25, 0.25), Row("lfps", 16, 0.5, 0.25, 0.25),
        };
        var c = AttentionOperatorBench.Compare(rows);
        Assert.Equal((1.0, double.NaN), (c[0].OverDense, c[0].IndexOverOracle));
        Assert.Equal((2 / 1.5, 1.0), (c[1].OverDense, c[1].IndexOverOracle));
        Assert.Equal((4.0, 4.0), (c[2].OverDense, c[2].IndexOverOracle));
        Assert.True(double.IsNaN(c[3].IndexOverOracle)); // no oracle at that budget
        Assert.True(double.IsNaN(c[4].OverDense)); // no dense at that context
    }

    [Fact]
    public void The_first_step_is_never_timed() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionOperatorBench(new AttentionOperatorBench.Options
        {
            Shape = SyntheticAttention.ConfigFor(2, 4, 2, 16), WarmupSteps = 0,
        }));

    [Fact]
    public void A_method_with_inline_parameters_is_its_own_row()
    {
        var spec = SparseDecode.Selection.SelectorSpec.ParseInline("lfps:granularity=kv;radius=0", "2%");
        Assert.Equal(("lfps", SparseDecode.Selection.SelectionGranularity.KvHead), (spec.Method, spec.EffectiveGranularity));
        Assert.Throws<SparseDecode.Selection.SelectorSpec.SpecException>(() => SparseDecode.Selection.SelectorSpec.ParseInline("lfps:radius", "2%"));

        var rows = Run("lfps", "lfps:granularity=kv").Rows;
        Assert.Equal(["lfps", "lfps:granularity=kv"], rows.Select(r => r.Method));
        // one list per KV head serves its 2 query heads: a quarter of each context attended per query head either way
        Assert.All(rows, r => Assert.Equal(16.0, r.KeysAttended));
    }
}
