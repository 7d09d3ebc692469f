using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace SparseDecode.Server.Scheduling;

/// <summary>A Prometheus histogram of durations: fixed upper bounds in seconds, a count per bucket, the sum and the
/// count. Observing takes no lock and allocates nothing; rendering reads the counts as they stand (a scrape racing an
/// observation may see the count one ahead of a bucket, as Prometheus clients allow).</summary>
public sealed class LatencyHistogram
{
    private readonly double[] _bounds;
    private readonly long[] _counts;
    private long _count, _sumTicks;

    /// <param name="bounds">Upper bounds in seconds, increasing; a last bucket (+Inf) is implied.</param>
    public LatencyHistogram(params double[] bounds)
    {
        if (bounds.Length == 0) throw new ArgumentException("A histogram needs at least one bucket bound.", nameof(bounds));
        for (int i = 0; i < bounds.Length; i++)
            if (!double.IsFinite(bounds[i]) || bounds[i] <= 0 || (i > 0 && bounds[i] <= bounds[i - 1]))
                throw new ArgumentException($"Bucket bounds must be positive, finite and increasing; bound {i} is {bounds[i]}.", nameof(bounds));
        _bounds = bounds;
        _counts = new long[bounds.Length + 1];
    }

    /// <summary>Records a duration of `ticks` (<see cref="Stopwatch"/> ticks; negative counts as zero).</summary>
    public void Observe(long ticks)
    {
        ticks = Math.Max(0, ticks);
        double seconds = ticks / (double)Stopwatch.Frequency;
        int i = 0;
        while (i < _bounds.Length && seconds > _bounds[i]) i++;
        Interlocked.Increment(ref _counts[i]);
        Interlocked.Add(ref _sumTicks, ticks);
        Interlocked.Increment(ref _count);
    }

    public long Count => Interlocked.Read(ref _count);

    /// <summary>Appends a histogram family's HELP and TYPE lines (once per family, before its samples).</summary>
    public static void RenderHeader(StringBuilder sb, string name, string help)
    {
        sb.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        sb.Append("# TYPE ").Append(name).Append(" histogram\n");
    }

    /// <summary>Appends this histogram's samples in the text exposition format, with `labels`: cumulative `_bucket`
    /// lines (le bounds, then +Inf), `_sum` in seconds and `_count`.</summary>
    public void Render(StringBuilder sb, string name, string labels)
    {
        var ci = CultureInfo.InvariantCulture;
        long cumulative = 0;
        for (int i = 0; i <= _bounds.Length; i++)
        {
            cumulative += Interlocked.Read(ref _counts[i]);
            string le = i < _bounds.Length ? _bounds[i].ToString("R", ci) : "+Inf";
            sb.Append(name).Append("_bucket{").Append(labels).Append(",le=\"").Append(le).Append("\"} ").Append(cumulative.ToString(ci)).Append('\n');
        }
        sb.Append(name).Append("_sum{").Append(labels).Append("} ")
            .Append((Interlocked.Read(ref _sumTicks) / (double)Stopwatch.Frequency).ToString("R", ci)).Append('\n');
        sb.Append(name).Append("_count{").Append(labels).Append("} ").Append(Count.ToString(ci)).Append('\n');
    }
}
