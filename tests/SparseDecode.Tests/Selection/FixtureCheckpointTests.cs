using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Selection;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Selection;

/// <summary>Every method on the committed llama3-gqa fixture checkpoint (GQA, llama3 RoPE) through the engine's
/// decode loop, teacher-forced on the reference tokens.</summary>
public class FixtureCheckpointTests
{
    private static (List<float[]> Logits, SparsityReport Report) Decode(Transformer model, int[] ids, SpanPlanOps? selector)
    {
        using var cache = model.CreateCache(ids.Length);
        var ws = new DecodeWorkspace(model, cache, selector?.Granularity ?? SelectionGranularity.QueryHead);
        var observer = new SparsityObserver();
        model.Prefill(ids.AsSpan(0, 8), cache, ws.Logits);
        var logits = new List<float[]>();
        for (int i = 8; i < ids.Length; i++)
        {
            model.Decode(ids[i], cache, ws, selector, observer);
            logits.Add((float[])ws.Logits.Clone());
        }
        return (logits, observer.Totals());
    }

    [Fact]
    public void FullBudgetIsDenseAndSmallBudgetsAreMeasured()
    {
        string dir = Fixtures.Model("llama3-gqa");
        var ids = Fixtures.LoadReference(dir).TokenIds;
        using var model = Transformer.Load(dir);
        var (dense, _) = Decode(model, ids, null);
        foreach (string method in SelectorSpec.Methods)
        {
            var (full, fullReport) = Decode(model, ids, SelectorSpec.Parse(method, "100%", new Dictionary<string, string>()).Host(model.Config));
            for (int i = 0; i < dense.Count; i++) Assert.Equal(dense[i], full[i]);
            Assert.Equal(1.0, fullReport.MassRecall);
            var (_, small) = Decode(model, ids, SelectorSpec.Parse(method, "8", new Dictionary<string, string>()).Host(model.Config));
            Assert.Equal(ids.Length - 8, small.Steps);
            Assert.InRange(small.MassRecall, 0, 1 + 1e-9);
            if (method == "oracle") Assert.Equal(1.0, small.TopKRecall, 12);
        }
    }
}
