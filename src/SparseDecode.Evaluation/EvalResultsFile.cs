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
    };

    /// <summary>The grid this describes, for re-rendering a stored run (the inverse of <see cref="Of"/>).</summary>
    public EvalGrid ToGrid() => new()
    {
        Methods = Methods, Budgets = Budgets, Contexts = Contexts, Tasks = Tasks, Samples = Samples, Seed = Seed,
        Parameters = Parameters.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : ""),
        CacheType = Model.DTypeExtensions.Parse(KvType), TimingSteps = TimingSteps, FidelitySteps = FidelitySteps, PerplexityTokens = PerplexityTokens,
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
    /// <summary>The host's one-minute load average at the start and at the end of the run (null where the system
    /// does not report one), and its logical cores: a speed column is only a speed measurement when the cores were
    /// the run's own.</summary>
    public MachineLoad? Load { get; init; }
    /// <summary>Threads the run kept busy: the CPU engine's worker threads, or 1 for a GPU engine's host thread.</summary>
    public int Threads { get; init; } = 1;
    /// <summary>Step time per pair and context from the one-prefill sweep (empty when skipped).</summary>
    public IReadOnlyList<SpeedPoint> Speed { get; init; } = [];
}

/// <summary>How busy the host was during a run: its one-minute load averages at the start and the end, beside its
/// logical cores.</summary>
public sealed record MachineLoad(double AtStart, double AtEnd, int Cores)
{
    /// <summary>Other work shared the cores: at the end of the run the load average exceeds the run's own busy threads
    /// by more than half a core. (The end, not the start: the minute before a run often holds its own build.)</summary>
    public bool Shared(int ownThreads) => AtEnd > ownThreads + 0.5;

    /// <summary>The one-minute load average now, from /proc/loadavg; null where the system does not report it.</summary>
    public static double? Now()
    {
        try
        {
            string text = File.ReadAllText("/proc/loadavg");
            int space = text.IndexOf(' ');
            return space > 0 && double.TryParse(text.AsSpan(0, space), System.Globalization.NumberStyles.Float,
                System.Globalization.CultureInfo.InvariantCulture, out double v) ? v : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
