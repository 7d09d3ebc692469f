using System.Globalization;
using System.Text;
using SparseDecode.Cpu;
using SparseDecode.Engine;

namespace SparseDecode.Evaluation;

/// <summary>Measures how close a sparse method stays to dense attention, per layer and in total: attention-mass
/// recall (Σ of the dense probabilities of the selected keys; 1 when dense), top-k recall against the |S| keys of
/// largest dense probability, relative output error ‖o_sparse − o_dense‖/‖o_dense‖, keys scored to make the
/// selection, and the seconds spent selecting and attending. Sums are f64; nothing is allocated per step once
/// the scratch has grown to the context.
/// <para>Given the prompt positions of a needle task's needle lines, it also measures per layer whether the method
/// attended them: needle recall (the share of the needle positions among the selected keys, mean over heads and
/// steps) and needle-mass recall (dense attention's mass on the needle positions that the selection kept ÷ its
/// mass on all of them, summed over heads and steps before dividing, so the heads that look at the needles
/// weigh most).</para></summary>
public sealed class SparsityObserver : IAttentionObserver
{
    private sealed class Acc
    {
        public long Heads, Steps, DenseHeads, NeedleHeads;
        public double Mass, TopK, Error, Selected, Keys, Select, Attend, NeedleKeys, NeedleMass, NeedleDenseMass;
    }

    private Acc[] _layers = [];
    private float[] _scratch = new float[1024];
    private bool[] _marks = new bool[1024];
    private readonly int[] _needles;
    private int _queryHeads;

    /// <param name="needles">Key positions (prompt offsets) of the needle tokens; empty or null: not a needle
    /// task, and the needle figures are NaN.</param>
    public SparsityObserver(IEnumerable<int>? needles = null)
    {
        _needles = needles is null ? [] : needles.Distinct().Order().ToArray();
    }

    public int QueryHeads => _queryHeads;

    public void OnHead(in HeadObservation o)
    {
        var a = Layer(o.Layer);
        if (o.Head + 1 > _queryHeads) _queryHeads = o.Head + 1;
        var p = o.DenseProbabilities;
        int n = p.Length;
        a.Heads++;
        if (o.Selected.IsEmpty)
        {
            a.Mass += 1;
            a.TopK += 1;
            a.Selected += n;
            a.DenseHeads++;
        }
        else
        {
            var sel = o.Selected;
            double mass = 0;
            foreach (int i in sel) mass += p[i];
            a.Mass += Math.Min(1, mass);
            a.Selected += sel.Length;
            a.TopK += TopKRecall(p, sel);
        }
        if (_needles.Length > 0) Needles(a, p, o.Selected);
        double diff = 0, norm = 0;
        for (int i = 0; i < o.DenseOutput.Length; i++)
        {
            double d = (double)o.SparseOutput[i] - o.DenseOutput[i];
            diff += d * d;
            norm += (double)o.DenseOutput[i] * o.DenseOutput[i];
        }
        a.Error += norm > 0 ? Math.Sqrt(diff / norm) : Math.Sqrt(diff);
    }

    public void OnLayer(int layer, int context, long keysScored, bool dense, double selectSeconds, double attendSeconds)
    {
        var a = Layer(layer);
        a.Steps++;
        a.Keys += keysScored;
        a.Select += selectSeconds;
        a.Attend += attendSeconds;
    }

    /// <summary>Needle recall and needle mass of one head; positions beyond the keys seen so far do not count, and
    /// an empty selection (dense attention) keeps every needle.</summary>
    private void Needles(Acc a, ReadOnlySpan<float> p, ReadOnlySpan<int> sel)
    {
        int n = p.Length, inRange = 0, hits = 0;
        if (_marks.Length < n) _marks = new bool[Math.Max(n, 2 * _marks.Length)];
        bool dense = sel.IsEmpty;
        foreach (int i in sel) _marks[i] = true;
        double kept = 0, all = 0;
        foreach (int pos in _needles)
        {
            if (pos >= n) break;
            inRange++;
            all += p[pos];
            if (dense || _marks[pos])
            {
                hits++;
                kept += p[pos];
            }
        }
        foreach (int i in sel) _marks[i] = false;
        if (inRange == 0) return;
        a.NeedleHeads++;
        a.NeedleKeys += hits / (double)inRange;
        a.NeedleMass += kept;
        a.NeedleDenseMass += all;
    }

    /// <summary>|S ∩ top-|S| by dense probability| / |S|; ties at the threshold count as hits up to the number of
    /// top slots they fill, so any valid top-k set scores 1.</summary>
    private double TopKRecall(ReadOnlySpan<float> p, ReadOnlySpan<int> sel)
    {
        int k = sel.Length, n = p.Length;
        if (k >= n) return 1;
        if (_scratch.Length < n) _scratch = new float[Math.Max(n, 2 * _scratch.Length)];
        var work = _scratch.AsSpan(0, n);
        p.CopyTo(work);
        float threshold = TopK.KthLargest(work, k);
        int above = 0;
        foreach (float v in p) if (v > threshold) above++;
        int hitAbove = 0, hitTies = 0;
        foreach (int i in sel)
        {
            if (p[i] > threshold) hitAbove++;
            else if (p[i] == threshold) hitTies++;
        }
        return (hitAbove + Math.Min(hitTies, k - above)) / (double)k;
    }

    private Acc Layer(int layer)
    {
        if (layer >= _layers.Length)
        {
            int old = _layers.Length;
            Array.Resize(ref _layers, layer + 1);
            for (int i = old; i < _layers.Length; i++) _layers[i] = new Acc();
        }
        return _layers[layer];
    }

    /// <summary>One row per layer observed.</summary>
    public IReadOnlyList<SparsityReport> Layers()
    {
        var rows = new SparsityReport[_layers.Length];
        for (int l = 0; l < rows.Length; l++) rows[l] = Row(l, [_layers[l]]);
        return rows;
    }

    /// <summary>All layers together: the numbers of the evaluation grid.</summary>
    public SparsityReport Totals() => Row(SparsityReport.AllLayers, _layers);

    private SparsityReport Row(int layer, IReadOnlyList<Acc> accs)
    {
        long heads = 0, denseHeads = 0, steps = 0, needleHeads = 0;
        double mass = 0, topk = 0, error = 0, selected = 0, keys = 0, select = 0, attend = 0, needleKeys = 0, needleMass = 0, needleDense = 0;
        foreach (var a in accs)
        {
            heads += a.Heads;
            denseHeads += a.DenseHeads;
            steps = Math.Max(steps, a.Steps);
            mass += a.Mass;
            topk += a.TopK;
            error += a.Error;
            selected += a.Selected;
            keys += a.Keys;
            select += a.Select;
            attend += a.Attend;
            needleHeads += a.NeedleHeads;
            needleKeys += a.NeedleKeys;
            needleMass += a.NeedleMass;
            needleDense += a.NeedleDenseMass;
        }
        double h = Math.Max(1, heads), s = Math.Max(1, steps);
        return new SparsityReport(layer, steps,
            heads == 0 ? double.NaN : mass / h, heads == 0 ? double.NaN : topk / h, heads == 0 ? double.NaN : error / h,
            heads == 0 ? double.NaN : selected / h, selected / s, heads == 0 ? double.NaN : denseHeads / h,
            keys / s, keys / s / Math.Max(1, _queryHeads), select / s, attend / s)
        {
            NeedleRecall = needleHeads == 0 ? double.NaN : needleKeys / needleHeads,
            NeedleMassRecall = needleDense > 0 ? needleMass / needleDense : double.NaN,
        };
    }

    /// <summary>The per-layer table `generate --report` prints, with the total last and what each column means
    /// below it: fixed decimals throughout, 77 columns wide so that an 80-column terminal does not wrap it.</summary>
    public string RenderTable()
    {
        var sb = new StringBuilder();
        var ci = CultureInfo.InvariantCulture;
        sb.AppendLine("layer mass-rec topk-rec  out-err selected dense keys/head select-ms attend-ms");
        void Line(string name, SparsityReport r) => sb.AppendLine(string.Format(ci,
            "{0,-5} {1,8:F4} {2,8:F4} {3,8:F4} {4,8:F1} {5,5} {6,9:F1} {7,9:F3} {8,9:F3}",
            name, r.MassRecall, r.TopKRecall, r.OutputError, r.MeanSelected,
            double.IsFinite(r.DenseShare) ? (r.DenseShare * 100).ToString("0", ci) + "%" : "–", r.KeysScoredPerHead,
            r.SelectSecondsPerStep * 1e3, r.AttendSecondsPerStep * 1e3));
        foreach (var r in Layers()) Line(r.Layer.ToString(ci), r);
        var t = Totals();
        Line("all", t);
        sb.AppendLine(string.Format(ci, "{0} decode steps; dropped mass δ = {1:F4} (1 − mass-rec of all layers)", t.Steps, t.DroppedMass));
        sb.AppendLine("mass-rec   dense attention's mass on the selected keys (1 = all of it)");
        sb.AppendLine("topk-rec   share of the selected keys in dense's top-k, k = keys selected");
        sb.AppendLine("out-err    ‖sparse − dense attention output‖ ÷ ‖dense output‖, mean over heads");
        sb.AppendLine("selected   keys attended per head per step; dense: heads that attended every key");
        sb.AppendLine("keys/head  keys scored per query head per step to select (all: sum of layers)");
        sb.Append("select-ms  ms per decode step choosing the keys; attend-ms: attending to them");
        return sb.ToString();
    }
}
