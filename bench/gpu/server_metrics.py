"""Reads the latency histograms of a running `sparsedecode serve` from /metrics: a snapshot of every histogram's
cumulative buckets, and a quantile of what was observed between two snapshots, interpolated linearly within its
bucket as Prometheus's histogram_quantile does (so it is as fine as the bucket bounds)."""
import re
import urllib.request

LINE = re.compile(r'^(\w+)_bucket\{[^}]*le="([^"]+)"\} (\S+)$')


def snapshot(url):
    """{histogram name: [(upper bound, cumulative count), ...]} from url + /metrics, summed over the histogram's
    label sets (the server's are per method)."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    sums = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            buckets = sums.setdefault(m.group(1), {})
            le = float(m.group(2))
            buckets[le] = buckets.get(le, 0.0) + float(m.group(3))
    return {name: sorted(buckets.items()) for name, buckets in sums.items()}


def quantile(before, after, name, q):
    """The q-quantile (0..1) of what `name` observed between the two snapshots; None if it observed nothing."""
    a = after.get(name, [])
    b = dict(before.get(name, []))
    buckets = [(le, count - b.get(le, 0.0)) for le, count in a]
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower  # beyond the last bound: its value is not known, the last bound is reported
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return lower


def count(before, after, name):
    a = after.get(name, [])
    return (a[-1][1] - dict(before.get(name, [])).get(float("inf"), 0.0)) if a else 0


def ms_cells(seconds):
    """Markdown table cells of durations in ms, "–" for none."""
    return " | ".join("–" if v is None else f"{1e3 * v:.1f}" for v in seconds)
