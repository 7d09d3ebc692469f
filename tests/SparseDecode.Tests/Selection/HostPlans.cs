using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Selection;

/// <summary>A method's plan with one sequence's state on the host, as the CPU engine runs it.</summary>
internal static class HostPlans
{
    public static SpanPlanOps Host(this SelectorSpec spec, ModelConfig config) => new(spec.CreatePlan(config, config.MaxPositions));
}
