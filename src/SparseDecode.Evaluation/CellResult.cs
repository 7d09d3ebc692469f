namespace SparseDecode.Evaluation;

/// <summary>The outcome of one grid cell: one method at one budget decoding one sample (task × context × sample)
/// from the shared dense prefill. Written as one JSON line as soon as it is known, so a run resumes by key.</summary>
public sealed record CellResult
{
    public required string Key { get; init; }
    public required string Model { get; init; }
    public required string Method { get; init; }
    /// <summary>The budget as given ("5%", "256"), or "-" for dense attention, which has none.</summary>
    public required string Budget { get; init; }
    public required int Context { get; init; }
    public required string Task { get; init; }
    public required int Sample { get; init; }
    public required int Seed { get; init; }
    public double? Depth { get; init; }
    public int PromptTokens { get; init; }
    /// <summary>The prompt's <see cref="TaskSample.Fingerprint"/>: cells of one sample carry the same one, which is
    /// how the paired comparisons know that two cells decoded the same prompt (null in cells stored before it was
    /// recorded).</summary>
    public string? PromptFingerprint { get; init; }
    /// <summary>Keys per head the budget resolves to at this prompt's length (the prompt length for dense).</summary>
    public int BudgetTokens { get; init; }

    // ---- accuracy (needle tasks) or perplexity (ppl)
    /// <summary>Task score in [0, 1]: exact match, or the fraction of expected items for partial-credit tasks.</summary>
    public double Score { get; init; }
    public bool Exact { get; init; }
    public double Partial { get; init; }
    public string? Expected { get; init; }
    public string? Generated { get; init; }
    /// <summary>Mean negative log-likelihood (nats per token) of the forced continuation (ppl only).</summary>
    public double? Nll { get; init; }

    // ---- speed, from the un-observed pass
    public int TimedSteps { get; init; }
    /// <summary>Median wall time of one whole decode step (all layers), un-observed.</summary>
    public double StepMs { get; init; }

    // ---- fidelity, from the observed pass (the observer computes dense attention beside the method)
    public int ObservedSteps { get; init; }
    public double MassRecall { get; init; }
    public double TopKRecall { get; init; }
    public double OutputError { get; init; }
    public double KeysScoredPerStep { get; init; }
    public double KeysAttendedPerStep { get; init; }
    /// <summary>Selection and attention time per step (all layers), timed by the engine around the method's own
    /// work only; the observer's dense reference is computed after and not counted.</summary>
    public double SelectMsPerStep { get; init; }
    public double AttendMsPerStep { get; init; }
    /// <summary>Needle tasks: the share of the needle lines' positions among the keys attended, and dense
    /// attention's mass on them that the selection kept (<see cref="SparsityReport.NeedleRecall"/>); null outside
    /// needle tasks and in cells stored before they were measured.</summary>
    public double? NeedleRecall { get; init; }
    public double? NeedleMassRecall { get; init; }
    /// <summary>Fidelity per layer over the observed steps, index = layer (null where not observed).</summary>
    public LayerFidelity[]? Layers { get; init; }

    /// <summary>Seconds of the dense prefill this cell's sample shared with the sample's other cells.</summary>
    public double PrefillSeconds { get; init; }
    /// <summary>Seconds of this cell's own decode passes (the speculative one included).</summary>
    public double Seconds { get; init; }

    /// <summary>The lossless column (<see cref="EvalGrid.Speculation"/>); null where it was not run: dense and ppl
    /// cells, grids without --speculate, and cells stored before it existed.</summary>
    public SpeculativeRun? Speculative { get; init; }
}

/// <summary>One sample decoded greedily by self-speculative decoding from the cell's dense prefill: the cell's
/// method drafts `Draft` tokens per pass, a dense pass verifies them. Its answer must be dense decoding's token
/// for token (<see cref="IdenticalToDense"/>); the rest says how much of the drafting was kept.</summary>
public sealed record SpeculativeRun
{
    /// <summary>Draft tokens per pass as given: "4", or "auto" (adaptive from 4).</summary>
    public required string Draft { get; init; }
    /// <summary>Whether the generated tokens equal dense decoding's of the same prompt, token for token.</summary>
    public required bool IdenticalToDense { get; init; }
    /// <summary>Index of the first generated token that differs from dense decoding's (null when identical).</summary>
    public int? FirstDifference { get; init; }
    /// <summary>Tokens generated: the cell's answer tokens (its decode steps plus the prefill's token).</summary>
    public required int Tokens { get; init; }
    /// <summary>Verification passes, draft tokens proposed and kept (<see cref="SparseDecode.Engine.SpeculationStats"/>).</summary>
    public required int Passes { get; init; }
    public required long Drafted { get; init; }
    public required long Accepted { get; init; }
    /// <summary>The speculative answer scored as the cell's own is.</summary>
    public required double Score { get; init; }
    public bool Exact { get; init; }
    public double Partial { get; init; }
    public string? Generated { get; init; }
    /// <summary>Wall time of the speculative decode per generated token, ms (drafts and verification passes).</summary>
    public double MsPerToken { get; init; }
}
