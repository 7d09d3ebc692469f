namespace SparseDecode.Selection;

/// <summary>A plan run on the host for one sequence (the CPU engine's selector): the plan's operations on
/// <see cref="SpanPlanOps"/>, and the list it returns copied into the layer selection. A layer whose every head
/// keeps every position attends densely (bitwise the dense result).</summary>
public sealed class PlanSelector(SelectionPlan plan) : IKvSelector
{
    public SelectionPlan Plan { get; } = plan;
    /// <summary>This sequence's plan buffers (read them to inspect a method's state).</summary>
    public SpanPlanOps State { get; } = new(plan);

    public string Name => Plan.Name;
    public SelectionGranularity Granularity => Plan.Granularity;

    public void BeginStep(int position) => State.BeginStep(position);

    public void Select(ISelectionBackend backend, LayerSelection selection)
    {
        if (selection.Granularity != Granularity || selection.Heads != Plan.Heads)
            throw new InvalidOperationException(
                $"The {Name} method selects per {Granularity} ({Plan.Heads} heads) but the layer selection was made for {selection.Granularity} with {selection.Heads} heads.");
        State.Bind(backend);
        var attend = Plan.Layer(State, backend.Layer);
        selection.Dense = true;
        if (attend is not IndexSet set) return;
        for (int h = 0; h < Plan.Heads; h++)
        {
            var ids = State.Indices(set, backend.Layer, h);
            ids.CopyTo(selection.Buffer(h));
            selection.SetCount(h, ids.Length);
            if (ids.Length < backend.Context) selection.Dense = false;
        }
    }
}
