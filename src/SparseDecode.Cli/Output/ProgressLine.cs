using System.Diagnostics;
using System.Globalization;

namespace SparseDecode.Cli.Output;

/// <summary>A one-line progress bar with ETA on stderr for a long phase (the prefill of a long prompt), redrawn in
/// place and at most 60 columns wide; on a redirected stderr a single line announces the phase instead, so that logs
/// get no carriage returns.</summary>
public sealed class ProgressLine
{
    private const int BarWidth = 20;
    private readonly string _label;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _live = !Console.IsErrorRedirected;

    public ProgressLine(string label, string announcement)
    {
        _label = label;
        if (!_live) Console.Error.WriteLine(announcement);
    }

    public void Report(int done, int total)
    {
        if (!_live) return;
        double share = total == 0 ? 1 : done / (double)total;
        Console.Error.Write("\r" + Render(_label, share, _clock.Elapsed.TotalSeconds, done, total));
        if (done >= total) Console.Error.WriteLine();
    }

    /// <summary>"prefill [#########...........]  45%  3600/8000  ETA 41 s"</summary>
    public static string Render(string label, double share, double elapsedSeconds, int done, int total)
    {
        int filled = (int)Math.Round(Math.Clamp(share, 0, 1) * BarWidth);
        string eta = share <= 0 ? "ETA –" : share >= 1 ? $"{elapsedSeconds:0} s" : $"ETA {elapsedSeconds * (1 - share) / share:0} s";
        return string.Create(CultureInfo.InvariantCulture,
            $"{label} [{new string('#', filled)}{new string('.', BarWidth - filled)}] {share * 100,3:0}%  {done}/{total}  {eta}   ");
    }
}
