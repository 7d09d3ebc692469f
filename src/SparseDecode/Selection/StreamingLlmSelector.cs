using SparseDecode.Model;

namespace SparseDecode.Selection;

/// <summary>StreamingLLM (Xiao et al., 2023): the first `sinks` positions (attention sinks) and the most recent
/// positions filling the rest of the budget. Positional only: nothing is scored, every head gets the same set.</summary>
public sealed class StreamingLlmSelector(ModelConfig config, Budget budget, int sinks = StreamingLlmSelector.DefaultSinks,
    SelectionGranularity granularity = SelectionGranularity.KvHead)
    : SelectorBase("streaming", config, budget, granularity)
{
    public const int DefaultSinks = 4;

    public int Sinks { get; } = sinks;

    protected override void SelectLayer(ISelectionBackend backend, LayerSelection selection)
    {
        int n = backend.Context, k = Budget.Resolve(n);
        if (k >= n)
        {
            selection.Dense = true;
            return;
        }
        int s = Math.Min(Sinks, k), recent = k - s;
        var first = selection.Buffer(0);
        for (int i = 0; i < s; i++) first[i] = i;
        for (int i = 0; i < recent; i++) first[s + i] = n - recent + i;
        selection.SetCount(0, k);
        for (int h = 1; h < selection.Heads; h++)
        {
            first[..k].CopyTo(selection.Buffer(h));
            selection.SetCount(h, k);
        }
    }
}
