using System.Diagnostics;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Engine;

namespace SparseDecode.Diagnostics;

/// <summary>The device draw (sampling.cu) against the host's <see cref="Sampler"/> on logits made to be hard — exact
/// ties, masked (−∞) tokens, one dominant token, vocabularies up to Llama 3's — under every kind of setting, and rows
/// whose logits are not finite; and its time against copying the logits to the host and drawing there.</summary>
internal static class SamplingCheck
{
    /// <summary>One family of logits: draws made, those equal to the host's, those that differ only where the uniform
    /// number lies within 1e-5 of a boundary between two tokens' shares (or top-p within 1e-5 of the cut), and the
    /// rest (which fail it).</summary>
    public sealed record Result(string Case, int Vocab, int Draws, int Equal, int AtBoundary, int Differ, string FirstDifference = "")
    {
        public bool Passed => Differ == 0 && Draws > 0;
    }

    private static readonly SamplingOptions[] Settings =
    [
        SamplingOptions.Greedy, new(1f), new(0.7f, 50), new(1f, 0, 0.9f), new(1.2f, 1000, 0.95f), new(0.5f, 0, 0.5f),
        new(2f, 1), new(1f, 0, 1e-6f), new(0.8f, 200_000), new(1e-3f, 3, 0.99f),
    ];

    private static readonly string[] Families = ["spread", "peaked", "ties", "masked"];

    public static List<Result> Run(CudaDevice device, int seed, int launches = 12)
    {
        var results = new List<Result>();
        int rows = Settings.Length + 3;
        using var kernels = new SamplingKernels(device, rows);
        using var stream = new CudaStream(device);
        foreach (int vocab in (int[])[1000, 8192, 128256])
        {
            using var logits = device.Allocate((long)rows * vocab * sizeof(float));
            var host = new float[rows * vocab];
            var tokens = new int[rows];
            foreach (var family in Families)
            {
                var rng = new Random(HashCode.Combine(seed, vocab, family));
                int draws = 0, equal = 0, boundary = 0, differ = 0;
                string first = "";
                for (int launch = 0; launch < launches; launch++)
                {
                    for (int r = 0; r < rows; r++) Fill(host.AsSpan(r * vocab, vocab), family, rng);
                    // the last three rows are not finite: a NaN, a +∞, every token masked
                    host[(Settings.Length) * vocab + rng.Next(vocab)] = float.NaN;
                    host[(Settings.Length + 1) * vocab + rng.Next(vocab)] = float.PositiveInfinity;
                    host.AsSpan((Settings.Length + 2) * vocab, vocab).Fill(float.NegativeInfinity);
                    logits.Upload<float>(host);
                    var drawers = new Sampler[rows];
                    var twins = new Sampler[rows];
                    for (int r = 0; r < rows; r++)
                    {
                        var o = Settings[r % Settings.Length] with { Seed = (ulong)(launch * 1000 + r) };
                        (drawers[r], twins[r]) = (new Sampler(o), new Sampler(o));
                        kernels.Set(r, drawers[r]);
                    }
                    kernels.Draw(logits, vocab, rows, tokens, stream);
                    for (int r = 0; r < rows; r++)
                    {
                        var row = host.AsSpan(r * vocab, vocab);
                        draws++;
                        if (r >= Settings.Length)
                        {
                            if (tokens[r] == -1) equal++;
                            else differ++;
                            if (tokens[r] != -1 && first.Length == 0) first = $"row {r} of logits that are not finite drew {tokens[r]}";
                            continue;
                        }
                        var twin = twins[r];
                        double u = twin.IsGreedy ? 0 : twin.Uniform();
                        int expected = twin.Choose(row, u);
                        if (tokens[r] == expected) equal++;
                        else if (AtBoundary(row, twin.Options, u, tokens[r])) boundary++;
                        else
                        {
                            differ++;
                            if (first.Length == 0) first = Describe(row, twin.Options, u, expected, tokens[r]);
                        }
                    }
                }
                results.Add(new Result(family, vocab, draws, equal, boundary, differ, first));
            }
        }
        return results;
    }

    /// <summary>Whether `got` is the host's draw for a uniform number or a top-p within 1e-5 of the given ones.</summary>
    private static bool AtBoundary(ReadOnlySpan<float> row, SamplingOptions o, double u, int got)
    {
        if (got < 0) return false;
        // the walk is monotone in the number: the host's tokens for numbers within 1e-5 of u are the kept tokens whose
        // ids lie between its tokens for u − 1e-5 and u + 1e-5 (where kept shares are under 1e-5, several of them)
        int below = new Sampler(o).Choose(row, Math.Clamp(u - 1e-5, 0, 0.9999999));
        int above = new Sampler(o).Choose(row, Math.Clamp(u + 1e-5, 0, 0.9999999));
        if (below <= got && got <= above)
        {
            var kept = new float[row.Length];
            new Sampler(o).Distribution(row, kept);
            if (kept[got] > 0) return true;
        }
        if (o.TopP < 1)
            foreach (float dp in (float[])[-1e-5f, 1e-5f])
                if (new Sampler(o with { TopP = Math.Clamp(o.TopP + dp, 1e-7f, 1f) }).Choose(row, u) == got) return true;
        return false;
    }

    /// <summary>What a difference looks like: the setting, the number, both tokens with their probabilities as the host
    /// keeps them (0: not kept) and their logits.</summary>
    private static string Describe(ReadOnlySpan<float> logits, SamplingOptions o, double u, int expected, int got)
    {
        var row = logits.ToArray();
        var kept = new float[row.Length];
        new Sampler(o).Distribution(row, kept);
        string Token(int t) => t < 0 ? $"{t}" : $"{t} (logit {row[t]:G6}, kept share {kept[t]:G6})";
        int tiedWithGot = got >= 0 ? row.Count(x => x == row[got]) : 0;
        return $"T {o.Temperature}, k {o.TopK}, p {o.TopP}, u {u:G9}: host {Token(expected)}, GPU {Token(got)}, {tiedWithGot} logits equal to the GPU's, {kept.Count(x => x > 0)} kept";
    }

    private static void Fill(Span<float> row, string family, Random rng)
    {
        for (int i = 0; i < row.Length; i++)
        {
            float g = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
            row[i] = family switch
            {
                "spread" => 3 * g,
                "peaked" => g,
                // many exact ties: a handful of values
                "ties" => MathF.Round(2 * g) / 2,
                // half the vocabulary masked
                _ => rng.Next(2) == 0 ? float.NegativeInfinity : 2 * g,
            };
        }
        if (family == "peaked") row[rng.Next(row.Length)] = 12;
        if (family == "masked") row[rng.Next(row.Length)] = 1;
    }

    /// <summary>Milliseconds per step to draw `rows` rows of `vocab` logits (with `options`) on the device, and to copy
    /// them to the host and draw there, as the step did before: the mean of `repeats`, and each one's spread
    /// ((slowest − fastest) ÷ mean).</summary>
    public static (double Device, double DeviceSpread, double Host, double HostSpread) Time(CudaDevice device, int rows, int vocab,
        SamplingOptions options, int repeats = 20)
    {
        using var kernels = new SamplingKernels(device, rows);
        using var stream = new CudaStream(device);
        using var logits = device.Allocate((long)rows * vocab * sizeof(float));
        var host = new float[rows * vocab];
        var rng = new Random(3);
        for (int i = 0; i < host.Length; i++) host[i] = (float)(rng.NextDouble() * 8 - 4);
        logits.Upload<float>(host);
        var samplers = Enumerable.Range(0, rows).Select(r => new Sampler(options with { Seed = (ulong)r })).ToArray();
        var tokens = new int[rows];
        for (int r = 0; r < rows; r++) kernels.Set(r, samplers[r]);
        kernels.Draw(logits, vocab, rows, tokens, stream);
        var (onDevice, deviceSpread) = Repeat(repeats, () =>
        {
            for (int r = 0; r < rows; r++) kernels.Set(r, samplers[r]);
            kernels.Draw(logits, vocab, rows, tokens, stream);
        });
        var (onHost, hostSpread) = Repeat(repeats, () =>
        {
            logits.Download<float>(host);
            for (int r = 0; r < rows; r++) tokens[r] = samplers[r].Next(host.AsSpan(r * vocab, vocab));
        });
        return (onDevice, deviceSpread, onHost, hostSpread);
    }

    /// <summary>`work` timed `repeats` times: the mean in milliseconds and (slowest − fastest) ÷ mean.</summary>
    private static (double Mean, double Spread) Repeat(int repeats, Action work)
    {
        var times = new double[repeats];
        for (int k = 0; k < repeats; k++)
        {
            long t0 = Stopwatch.GetTimestamp();
            work();
            times[k] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        double mean = times.Average();
        return (mean, (times.Max() - times.Min()) / mean);
    }
}
