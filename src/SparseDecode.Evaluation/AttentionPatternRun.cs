using SparseDecode.Engine;
using SparseDecode.Model;

namespace SparseDecode.Evaluation;

/// <summary>Makes the attention-pattern heat map's data: a window of held-out code prefilled densely, then decoded
/// token by token (teacher-forced through the code that follows) with dense attention while the recorder keeps the
/// chosen layers' probabilities.</summary>
public static class AttentionPatternRun
{
    public const int DefaultSteps = 64;
    public const int DefaultBins = 512;
    /// <summary>Keys before the first decode step shown at full resolution (the window then spans them plus the steps).</summary>
    public const int DefaultLookBack = 192;

    /// <summary>Seconds it is expected to take on a 2-core machine (for the ETA).</summary>
    public static double EstimateSeconds(int context, int steps) => GridRunner.PrefillSeconds(context) + steps * (3e-3 + context * 4e-6);

    /// <summary>Records on `engine`, which must support attention observers (<see cref="IInferenceEngine.SupportsObserver"/>).</summary>
    public static HeatmapData Record(IInferenceEngine engine, PromptBuilder builder, int context, string modelName,
        int? layer = null, int? head = null, int steps = DefaultSteps, int seed = 1)
    {
        if (!engine.SupportsObserver)
            throw new NotSupportedException($"The attention heat map reads every layer's attention, which {engine.DeviceName} does not report; record it on the CPU.");
        var c = engine.Config;
        if (layer is int l && (l < 0 || l >= c.NumLayers))
            throw new ArgumentException($"--heatmap-layer {l} is outside the model's {c.NumLayers} layers (0–{c.NumLayers - 1}).");
        if (head is int h && (h < 0 || h >= c.NumHeads))
            throw new ArgumentException($"--heatmap-head {h} is outside the model's {c.NumHeads} query heads (0–{c.NumHeads - 1}).");
        int promptLength = context - steps - 1;
        var sample = builder.Build(RulerTasks.Perplexity, promptLength, null, RandomExtensions.StableSeed(seed, "heatmap", context), steps);
        // all layers of a small model; one middle layer of a large one, whose records would be big
        var layers = layer is int one ? [one]
            : c.NumLayers * c.NumHeads <= 64 ? Enumerable.Range(0, c.NumLayers).ToArray() : [c.NumLayers / 2];
        int positions = sample.Prompt.Length + steps;
        var recorder = new AttentionPatternRecorder(layers, c.NumHeads, positions, DefaultBins, sample.Prompt.Length - DefaultLookBack);
        using var sequence = engine.CreateSequence(positions + 1);
        sequence.Prefill(sample.Prompt);
        for (int i = 0; i < steps; i++) sequence.Decode(sample.Answer[i], recorder);

        (int, int) chosen;
        string rule;
        if (head is int hh)
        {
            var candidates = recorder.Records.Keys.Where(k => k.Head == hh).ToList();
            chosen = candidates.OrderByDescending(k => recorder.Records[k].Concentration).First();
            rule = layer is null ? $"Head {hh} as asked; layer {chosen.Item1} is the one where it holds the most mass in its 64 largest keys outside the sinks and the 16 most recent positions." : "Layer and head as asked.";
        }
        else
        {
            chosen = recorder.MostStructured();
            rule = $"The head was chosen as the one (of {(layer is null ? $"layers {string.Join(", ", layers)}" : $"layer {layer}")}) whose 64 largest keys outside the first four and the 16 most recent positions hold the most attention mass (long-range structure).";
        }
        return recorder.Export(chosen.Item1, chosen.Item2, sample.Prompt.Length, modelName, rule);
    }
}
