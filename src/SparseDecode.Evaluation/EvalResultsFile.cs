namespace SparseDecode.Evaluation;

/// <summary>The grid as results.json records it.</summary>
public sealed record GridDescription
{
    public required IReadOnlyList<string> Methods { get; init; }
    public required IReadOnlyList<string> Budgets { get; init; }
    public required IReadOnlyList<int> Contexts { get; init; }
    public required IReadOnlyList<string> Tasks { get; init; }
    public required int Samples { get; init; }
    public required int Seed { get; init; }
    public required string KvType { get; init; }
    public required string Parameters { get; init; }
    public required int TimingSteps { get; init; }
    public required int FidelitySteps { get; init; }
    public required int PerplexityTokens { get; init; }
    public required int Reserve { get; init; }
    /// <summary>Draft tokens of the lossless column ("4", "auto"); null when the grid ran without --speculate (and
    /// in files written before it existed).</summary>
    public string? Speculate { get; init; }

    public static GridDescription Of(EvalGrid g) => new()
    {
        Methods = g.Methods,
        Budgets = g.Budgets,
        Contexts = g.Contexts,
        Tasks = g.Tasks,
        Samples = g.Samples,
        Seed = g.Seed,
        KvType = Model.DTypeExtensions.Name(g.CacheType),
        Parameters = g.ParameterText,
        TimingSteps = g.TimingSteps,
        FidelitySteps = g.FidelitySteps,
        PerplexityTokens = g.PerplexityTokens,
        Reserve = EvalGrid.Reserve,
        Speculate = g.Speculation?.ToString(),
    };

    /// <summary>The grid this describes, for re-rendering a stored run (the inverse of <see cref="Of"/>).</summary>
    public EvalGrid ToGrid() => new()
    {
        Methods = Methods, Budgets = Budgets, Contexts = Contexts, Tasks = Tasks, Samples = Samples, Seed = Seed,
        Parameters = Parameters.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : ""),
        CacheType = Model.DTypeExtensions.Parse(KvType), TimingSteps = TimingSteps, FidelitySteps = FidelitySteps, PerplexityTokens = PerplexityTokens,
        Speculation = Speculate is null ? null : Selection.SpeculationOptions.Parse(Speculate),
    };
}

/// <summary>Everything a run produced, as results.json: how it was made, the method rows and every cell.</summary>
public sealed record EvalResultsFile
{
    public required string Command { get; init; }
    public required string Model { get; init; }
    public required string Machine { get; init; }
    public required string Created { get; init; }
    public required double WallSeconds { get; init; }
    public required GridDescription Grid { get; init; }
    public required IReadOnlyList<MethodSummary> Summary { get; init; }
    public required IReadOnlyList<CellResult> Cells { get; init; }
    /// <summary>How busy other work kept the host during the run (null where the system does not report its CPU
    /// time): a speed column is only a speed measurement when the cores were the run's own.</summary>
    public MachineLoad? Load { get; init; }
    /// <summary>Step time per pair and context from the one-prefill sweep (empty when skipped).</summary>
    public IReadOnlyList<SpeedPoint> Speed { get; init; } = [];
}

/// <summary>How busy the host was with other work during a run: the cores that processes other than the run kept busy
/// on average (the machine's busy CPU time, from /proc/stat, less the run's own), beside the host's cores.</summary>
public sealed record MachineLoad(double OtherCores, int Cores)
{
    /// <summary>Other work took more than a quarter of a core on average: the step times are not the run's own.</summary>
    public bool Shared => OtherCores > 0.25;

    /// <summary>A reading to compare a later one with: the machine's busy CPU seconds and this process's, and the
    /// time; null where the system does not report its CPU time.</summary>
    public static Mark? Start() => Mark.Now();

    /// <summary>The load between `start` and now; null where either reading is missing or no time passed.</summary>
    public static MachineLoad? Since(Mark? start)
    {
        if (start is not Mark a || Mark.Now() is not Mark b || b.Wall <= a.Wall) return null;
        double other = ((b.MachineBusy - a.MachineBusy) - (b.Own - a.Own)) / (b.Wall - a.Wall);
        return new MachineLoad(Math.Max(0, other), Environment.ProcessorCount);
    }

    public readonly record struct Mark(double MachineBusy, double Own, double Wall)
    {
        public static Mark? Now()
        {
            using var self = System.Diagnostics.Process.GetCurrentProcess();
            double own = self.TotalProcessorTime.TotalSeconds;
            double wall = System.Diagnostics.Stopwatch.GetTimestamp() / (double)System.Diagnostics.Stopwatch.Frequency;
            return MachineBusySeconds() is double busy ? new Mark(busy, own, wall) : null;
        }
    }

    /// <summary>Seconds of CPU time every core has spent busy since boot (/proc/stat's "cpu" line: user, nice,
    /// system, irq, softirq, steal, at 100 ticks a second); null where the system does not report it.</summary>
    private static double? MachineBusySeconds()
    {
        try
        {
            using var reader = new StreamReader("/proc/stat");
            string? line = reader.ReadLine();
            if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal)) return null;
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 9) return null;
            double ticks = 0;
            foreach (int i in (int[])[1, 2, 3, 6, 7, 8]) ticks += double.Parse(f[i], System.Globalization.CultureInfo.InvariantCulture);
            return ticks / 100;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }
}
