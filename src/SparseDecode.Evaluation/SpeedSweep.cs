using System.Diagnostics;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Evaluation;

/// <summary>Median whole decode step of one (method, budget) pair at one context length.</summary>
public sealed record SpeedPoint(string Method, string Budget, int Context, double StepMs, double MinMs, int Steps);

/// <summary>The step-time-vs-context curve, cheaply: one dense prefill of held-out code at the longest context,
/// then for each shorter context a copy of that cache cut back to it (its length set lower: the keys beyond are
/// overwritten as decoding proceeds), from which every pair decodes the code that follows, un-observed and timed.
/// One prefill serves every context, so the curve costs a few seconds beyond it.</summary>
public static class SpeedSweep
{
    /// <summary>Powers of two from 1024 below the longest context, the grid's contexts and the longest itself.</summary>
    public static IReadOnlyList<int> Contexts(IReadOnlyList<int> gridContexts)
    {
        int max = gridContexts.Max();
        var set = new SortedSet<int>(gridContexts);
        for (int c = 1024; c < max; c *= 2) set.Add(c);
        return set.ToList();
    }

    public static double EstimateSeconds(IReadOnlyList<int> contexts, int pairs, int steps) =>
        GridRunner.PrefillSeconds(contexts.Max()) + contexts.Sum(c => pairs * steps * (3e-3 + c * 1e-6));

    public static List<SpeedPoint> Run(IInferenceEngine engine, PromptBuilder builder, EvalGrid grid, IReadOnlyList<int> contexts,
        Func<MethodBudget, SelectionPlan?> plans, int steps = 16, Action<string>? status = null)
    {
        int max = contexts.Max();
        var sample = builder.Build(RulerTasks.Perplexity, max - steps - 1, null, RandomExtensions.StableSeed(grid.Seed, "speed", max), steps);
        int[] stream = [.. sample.Prompt, .. sample.Answer];
        status?.Invoke($"step-time sweep: prefilling {sample.Prompt.Length} tokens");
        int capacity = stream.Length + 1;
        using var prefilled = engine.CreateSequence(capacity);
        prefilled.Prefill(sample.Prompt);
        var points = new List<SpeedPoint>();
        var times = new double[steps];
        // untimed rounds first: .NET optimises hot methods only after they have run a while, and the first
        // context measured must not pay for that
        status?.Invoke("step-time sweep: warming up");
        for (int round = 0; round < 2; round++)
            foreach (var pair in grid.Pairs)
            {
                using var copy = prefilled.Fork(capacity, plans(pair));
                copy.Truncate(contexts.Min() - steps - 1);
                for (int i = 0; i < steps; i++) copy.Decode(stream[copy.Length]);
            }
        foreach (int context in contexts)
        {
            int start = context - steps - 1;
            foreach (var pair in grid.Pairs)
            {
                status?.Invoke($"step-time sweep: {pair} at {context}");
                using var copy = prefilled.Fork(capacity, plans(pair));
                copy.Truncate(start);
                for (int i = 0; i < steps; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    copy.Decode(stream[start + i]);
                    times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds * 1e3;
                }
                var timed = times.Skip(1).Order().ToArray(); // the first step builds the plan's state
                points.Add(new SpeedPoint(pair.Method, pair.Budget, context, timed[timed.Length / 2], timed[0], steps - 1));
            }
        }
        return points;
    }
}

/// <summary>speed.json: the sweep and what it was made from, so a rerun of the same grid reuses it.</summary>
public sealed record SpeedSweepFile(string Key, IReadOnlyList<SpeedPoint> Points);
