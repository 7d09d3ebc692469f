namespace SparseDecode.Server.Scheduling;

/// <summary>Sizes each scheduler step's prompt tokens so that their prefill takes about <see cref="Share"/> times as
/// long as the step's decoding (<see cref="SchedulerOptions.PacePrefill"/>). A stream's gap between tokens then stays
/// near (1 + Share) times a step without a prompt (where even <see cref="Granule"/> prompt tokens take longer than
/// Share × the decode, the pacer holds one granule and the gap is what that costs), and a prompt that arrives while
/// others stream gets its first token after about (1 + 1 / Share) times its prefill alone: the same work, spread over
/// steps instead of stalling them. With nothing decoding a step takes every prompt token the fixed budget allows.
///
/// Measured as the steps run, from their wall time only, so it holds whether or not a backend's prefill returns before
/// its work is done (the decode that follows waits for it): a step with decode rows and no prompt gives the decode
/// time D; a step with both gives its prefill time as its whole time less D, and so the prompt tokens per second at
/// the size it ran; the next budget is that rate times Share × D, moved at most ×2 or ÷2 a step, in whole
/// <see cref="Granule"/>s (the first paced step takes one granule; a step that took under half its budget, a prompt's
/// tail, moves nothing). When D is not known for about the rows now decoding (none measured yet, their count moved
/// by more than an eighth, or <see cref="RefreshSteps"/> paced steps since), the next step decodes alone to measure it.</summary>
public sealed class PrefillPacer
{
    /// <summary>Budgets are whole multiples of this many tokens (and never fewer).</summary>
    public const int Granule = 16;
    /// <summary>Paced steps after which the decode time is measured again.</summary>
    public const int RefreshSteps = 64;

    private readonly int _most;
    private double _decodeSeconds = -1;
    private int _decodeRows, _sinceMeasured;
    private double _budget = -1;

    /// <param name="most">Prompt tokens a step may take at most (int.MaxValue: no limit).</param>
    /// <param name="share">Prefill time per step as a share of the decode time.</param>
    public PrefillPacer(int most, double share = 1)
    {
        if (most < 1) throw new ArgumentOutOfRangeException(nameof(most), $"A step's prompt tokens at most must be ≥ 1, got {most}.");
        if (!double.IsFinite(share) || share <= 0) throw new ArgumentOutOfRangeException(nameof(share), $"The prefill's share of a step must be positive, got {share}.");
        (_most, Share) = (most, share);
    }

    public double Share { get; }

    /// <summary>Prompt tokens the next step may take, with `decodeRows` sequences decoding in it: the fixed budget when
    /// none decode, 0 when the decode time must be measured first, else the paced budget.</summary>
    public int Budget(int decodeRows)
    {
        if (decodeRows == 0) return _most;
        if (!Known(decodeRows)) return 0;
        return _budget < 0 ? Math.Min(_most, Granule) : (int)Math.Min(_most, _budget);
    }

    private bool Known(int rows) =>
        _decodeSeconds > 0 && _sinceMeasured < RefreshSteps && Math.Abs(rows - _decodeRows) * 8 <= _decodeRows;

    /// <summary>A step ran: `decodeRows` sequences decoded, `promptTokens` prompt tokens were prefilled, in `seconds`
    /// of wall time altogether.</summary>
    public void Observe(int decodeRows, int promptTokens, double seconds)
    {
        if (decodeRows == 0 || seconds <= 0) return;
        if (promptTokens == 0)
        {
            (_decodeSeconds, _decodeRows, _sinceMeasured) = (seconds, decodeRows, 0);
            return;
        }
        if (!Known(decodeRows)) return;
        _sinceMeasured++;
        // a step that took under half its budget (a prompt's tail) ran at a size that tells little of the budget's
        if (_budget >= 0 && promptTokens * 2 < _budget) return;
        // at least a little prefill time, so that one noisy step cannot make the rate unbounded
        double prefill = Math.Max(seconds - _decodeSeconds, 0.05 * _decodeSeconds);
        double next = promptTokens / prefill * Share * _decodeSeconds;
        if (_budget >= 0) next = Math.Clamp(next, _budget / 2, _budget * 2);
        _budget = Math.Min(_most, Math.Max(Granule, Math.Floor(next / Granule) * Granule));
    }
}
