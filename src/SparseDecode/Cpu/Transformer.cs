using System.Buffers;
using System.Diagnostics;
using System.Numerics.Tensors;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Engine;

namespace SparseDecode.Cpu;

/// <summary>A Llama-family decoder on the CPU: prefill (matrix-matrix, all cores, dense causal attention) and
/// decode steps of one token for each of one or several sequences (<see cref="DecodeBatch"/>) whose attention goes
/// through each sequence's plan. Weights stay memory-mapped in their stored type.</summary>
public sealed unsafe class Transformer : IDisposable
{
    private readonly WeightStore _weights;
    private readonly LayerWeights[] _layers;
    private readonly TensorView _embedding;
    private readonly TensorView _lmHead;
    private readonly float[] _finalNorm;
    private readonly Rope _rope;
    private readonly float _eps;

    public ModelConfig Config { get; }
    public string Directory { get; }
    public float AttentionScale { get; }
    public int PrefillChunk { get; set; } = 512;

    private Transformer(string directory, ModelConfig config, WeightStore weights)
    {
        Directory = directory;
        Config = config;
        _weights = weights;
        var c = config;
        _embedding = weights.Get("model.embed_tokens.weight", c.VocabSize, c.HiddenSize);
        if (weights.Contains("lm_head.weight")) _lmHead = weights.Get("lm_head.weight", c.VocabSize, c.HiddenSize);
        else if (c.TieEmbeddings) _lmHead = _embedding;
        else throw new ModelFormatException($"{directory}: tensor 'lm_head.weight' is missing and tie_word_embeddings is false.");
        _finalNorm = weights.Get("model.norm.weight", c.HiddenSize).ToFloatArray();
        _layers = new LayerWeights[c.NumLayers];
        for (int l = 0; l < c.NumLayers; l++) _layers[l] = LayerWeights.Bind(weights, c, l);
        _rope = new Rope(c.Rope, c.HeadDim, c.MaxPositions);
        _eps = (float)c.RmsNormEps;
        AttentionScale = 1f / MathF.Sqrt(c.HeadDim);
    }

    public static Transformer Load(string directory)
    {
        if (!System.IO.Directory.Exists(directory)) throw new ModelFormatException($"{directory}: model directory not found.");
        var config = ModelConfig.Load(directory);
        var weights = WeightStore.Open(directory);
        try
        {
            return new Transformer(directory, config, weights);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    public long ParameterCount => _weights.All().Sum(t => t.ElementCount);
    public DType WeightType => _layers[0].Q.Type;
    /// <summary>Bytes of weights one decode step reads (every matrix once; the embedding row is negligible).</summary>
    public long WeightBytesPerToken => _weights.All().Where(t => t.Shape.Length == 2 && t.Name != "model.embed_tokens.weight")
        .Sum(t => t.ElementCount * t.Type.SizeInBytes()) + (_lmHead.Name == _embedding.Name ? _embedding.ElementCount * _embedding.Type.SizeInBytes() : 0);

    public KvCache CreateCache(int capacity, DType type = DType.F32, int pageSize = 16) =>
        KvCache.For(Config, type, Math.Min(capacity, Config.MaxPositions), pageSize);

    private void CheckPositions(int end)
    {
        if (end > Config.MaxPositions)
            throw new ContextOverflowException($"The sequence needs {end} positions but the model's context is {Config.MaxPositions} tokens.");
        if (Config.SlidingWindow is int w && end > w)
            throw new ContextOverflowException($"The sequence needs {end} positions but sliding-window attention beyond {w} tokens is not supported.");
    }

    private void CheckToken(int id)
    {
        if ((uint)id >= (uint)Config.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(id), $"Token id {id} is outside the vocabulary of {Config.VocabSize}.");
    }

    // ---------------------------------------------------------------- prefill

    /// <summary>Runs tokens at positions cache.Length.. through the model (dense attention), appending to the cache.
    /// Writes the last token's logits into lastLogits (if not empty) and, if allLogits is given, every token's
    /// logits ([tokens, vocab], row-major).</summary>
    public void Prefill(ReadOnlySpan<int> tokens, KvCache cache, Span<float> lastLogits, Span<float> allLogits = default)
    {
        int start = cache.Length;
        CheckPositions(start + tokens.Length);
        foreach (int t in tokens) CheckToken(t);
        for (int c0 = 0; c0 < tokens.Length; c0 += PrefillChunk)
        {
            int n = Math.Min(PrefillChunk, tokens.Length - c0);
            bool last = c0 + n == tokens.Length;
            PrefillChunkRun(tokens.Slice(c0, n), cache,
                last ? lastLogits : default,
                allLogits.IsEmpty ? default : allLogits.Slice(c0 * Config.VocabSize, n * Config.VocabSize));
        }
    }

    private void PrefillChunkRun(ReadOnlySpan<int> tokens, KvCache cache, Span<float> lastLogits, Span<float> allLogits)
    {
        var c = Config;
        int T = tokens.Length, H = c.HiddenSize, start = cache.Length;
        cache.EnsureCapacity(start + T);
        var pool = WorkerPool.Shared;
        var attention = new CausalBlockAttention(c.NumHeads, c.NumKvHeads, c.HeadDim, AttentionScale, pool.Threads);
        var buffers = ArrayPool<float>.Shared;
        float[] x = buffers.Rent(T * H), xn = buffers.Rent(T * H), q = buffers.Rent(T * c.QDim), k = buffers.Rent(T * c.KvDim),
            v = buffers.Rent(T * c.KvDim), att = buffers.Rent(T * c.QDim), gate = buffers.Rent(T * c.IntermediateSize),
            up = buffers.Rent(T * c.IntermediateSize);
        try
        {
            for (int t = 0; t < T; t++) Embed(tokens[t], x.AsSpan(t * H, H));
            for (int l = 0; l < c.NumLayers; l++)
            {
                var w = _layers[l];
                for (int t = 0; t < T; t++) Norms.RmsNorm(x.AsSpan(t * H, H), w.AttentionNorm, _eps, xn.AsSpan(t * H, H));
                MatMul.Matrix(w.Q, xn.AsSpan(0, T * H), q, T, w.QBias);
                MatMul.Matrix(w.K, xn.AsSpan(0, T * H), k, T, w.KBias);
                MatMul.Matrix(w.V, xn.AsSpan(0, T * H), v, T, w.VBias);
                for (int t = 0; t < T; t++)
                {
                    _rope.Apply(q.AsSpan(t * c.QDim, c.QDim), c.NumHeads, start + t);
                    _rope.Apply(k.AsSpan(t * c.KvDim, c.KvDim), c.NumKvHeads, start + t);
                    cache.Write(l, start + t, k.AsSpan(t * c.KvDim, c.KvDim), v.AsSpan(t * c.KvDim, c.KvDim));
                }
                fixed (float* qp = q, op = att) attention.Run(pool, cache, l, qp, op, start, T);
                MatMul.Matrix(w.O, att.AsSpan(0, T * c.QDim), xn, T, w.OBias);
                TensorPrimitives.Add(x.AsSpan(0, T * H), xn.AsSpan(0, T * H), x.AsSpan(0, T * H));
                for (int t = 0; t < T; t++) Norms.RmsNorm(x.AsSpan(t * H, H), w.MlpNorm, _eps, xn.AsSpan(t * H, H));
                MatMul.Matrix(w.Gate, xn.AsSpan(0, T * H), gate, T, w.GateBias);
                MatMul.Matrix(w.Up, xn.AsSpan(0, T * H), up, T, w.UpBias);
                int F = c.IntermediateSize;
                for (int t = 0; t < T; t++) Activations.SwiGlu(gate.AsSpan(t * F, F), up.AsSpan(t * F, F));
                MatMul.Matrix(w.Down, gate.AsSpan(0, T * F), xn, T, w.DownBias);
                TensorPrimitives.Add(x.AsSpan(0, T * H), xn.AsSpan(0, T * H), x.AsSpan(0, T * H));
            }
            cache.Length = start + T;
            if (!allLogits.IsEmpty)
            {
                for (int t = 0; t < T; t++) Norms.RmsNorm(x.AsSpan(t * H, H), _finalNorm, _eps, xn.AsSpan(t * H, H));
                MatMul.Matrix(_lmHead, xn.AsSpan(0, T * H), allLogits, T);
            }
            if (!lastLogits.IsEmpty)
            {
                Norms.RmsNorm(x.AsSpan((T - 1) * H, H), _finalNorm, _eps, xn.AsSpan(0, H));
                MatMul.Vector(_lmHead, xn.AsSpan(0, H), lastLogits);
            }
        }
        finally
        {
            foreach (var a in new[] { x, xn, q, k, v, att, gate, up }) buffers.Return(a);
        }
    }

    private void Embed(int token, Span<float> x) =>
        ElementConvert.ToSingle(_embedding.Type, _embedding.Row(token), x);

    // ---------------------------------------------------------------- decode

    /// <summary>One decode step of one sequence: the token at position cache.Length; attention per layer through
    /// the plan (null: dense). Writes the next-token logits into workspace.Logits. The one-row case of
    /// <see cref="Decode(DecodeBatch, IAttentionObserver?)"/>.</summary>
    public void Decode(int token, KvCache cache, DecodeWorkspace ws, SpanPlanOps? plan = null, IAttentionObserver? observer = null)
    {
        var alone = ws.Alone;
        alone.Clear();
        alone.Add(token, cache, ws, plan);
        Decode(alone, observer);
    }

    /// <summary>One decode step of every row of `batch`: each row's token at position cache.Length of its own
    /// sequence (rows added with <see cref="DecodeBatch.AddNext"/> at the positions after it), attention per layer through the row's plan (null: dense); each row's next-token logits land in
    /// its workspace's Logits. Every weight product (q/k/v, o, gate/up, down, lm_head) runs once for all rows,
    /// reading each weight row from memory once for all of them, and sums each output exactly as a lone row
    /// does: a row's result equals that sequence decoded alone, bit for bit. Norms, RoPE, the cache append, the
    /// plan's selection and attention are each row's own (attention parallel over rows). `observer` (the
    /// fidelity metrics) watches a one-row batch only.</summary>
    public void Decode(DecodeBatch batch, IAttentionObserver? observer = null)
    {
        var c = Config;
        int rows = batch.Count;
        if (rows == 0) return;
        if (observer is not null && rows != 1)
            throw new ArgumentException($"An attention observer watches one sequence's step, but the batch has {rows} rows: decode an observed sequence alone.", nameof(observer));
        for (int b = 0; b < rows; b++)
        {
            CheckPositions(batch.Position(b) + 1);
            CheckToken(batch.Token(b));
        }
        for (int b = 0; b < rows; b++)
        {
            Embed(batch.Token(b), batch.Workspace(b).X);
            batch.Plan(b)?.BeginStep(batch.Position(b));
        }
        var pool = WorkerPool.Shared;
        var linear = batch.Linear;
        float** x = batch.Table(DecodeBatch.Buffer.X), xn = batch.Table(DecodeBatch.Buffer.Xn), q = batch.Table(DecodeBatch.Buffer.Q),
            k = batch.Table(DecodeBatch.Buffer.K), v = batch.Table(DecodeBatch.Buffer.V), att = batch.Table(DecodeBatch.Buffer.Att),
            gate = batch.Table(DecodeBatch.Buffer.Gate), up = batch.Table(DecodeBatch.Buffer.Up), logits = batch.Table(DecodeBatch.Buffer.Logits);
        for (int l = 0; l < c.NumLayers; l++)
        {
            var w = _layers[l];
            for (int b = 0; b < rows; b++) Norms.RmsNorm(batch.Workspace(b).X, w.AttentionNorm, _eps, batch.Workspace(b).Xn);
            linear.Add(w.Q, q, w.QBias).Add(w.K, k, w.KBias).Add(w.V, v, w.VBias).Run(pool, xn, rows);
            if (batch.HasRuns)
            {
                // rows of one sequence read each other's keys: every row appends before any attends, then all rows
                // attend densely in one region that reads each key and value about once for all of them
                for (int b = 0; b < rows; b++) Append(l, batch.Cache(b), batch.Workspace(b), batch.Position(b));
                batch.RunAttention.Run(batch, l, AttentionScale);
            }
            else batch.Attention.Run(this, batch, l, observer);
            // the output projection and the MLP's down projection add into the residual stream in place
            linear.Add(w.O, x, w.OBias, accumulate: true).Run(pool, att, rows);
            for (int b = 0; b < rows; b++) Norms.RmsNorm(batch.Workspace(b).X, w.MlpNorm, _eps, batch.Workspace(b).Xn);
            batch.Mlp.Run(pool, w.Gate, w.Up, w.GateBias, w.UpBias, xn, gate, up, rows);
            linear.Add(w.Down, x, w.DownBias, accumulate: true).Run(pool, gate, rows);
        }
        for (int b = 0; b < rows; b++)
        {
            var ws = batch.Workspace(b);
            batch.Cache(b).Length++;
            Norms.RmsNorm(ws.X, _finalNorm, _eps, ws.Xn);
        }
        linear.Add(_lmHead, logits).Run(pool, xn, rows);
    }

    /// <summary>The rows' attention in one layer (<see cref="AttendRow"/>), parallel over rows: each row's own
    /// parallel regions (the plan's scoring, attention's parts) then run on the thread that took the row, so a
    /// step has one region here instead of several per row. One row runs alone with its regions parallel. A row's
    /// result does not depend on the thread that runs it.</summary>
    internal sealed class RowAttentionJob : ParallelWork
    {
        private Transformer? _model;
        private DecodeBatch? _batch;
        private IAttentionObserver? _observer;
        private int _layer;

        public void Run(Transformer model, DecodeBatch batch, int layer, IAttentionObserver? observer)
        {
            (_model, _batch, _layer, _observer) = (model, batch, layer, observer);
            try
            {
                WorkerPool.Shared.Run(this, batch.Count);
            }
            finally
            {
                (_model, _batch, _observer) = (null, null, null);
            }
        }

        public override void Execute(int row, int worker) =>
            _model!.AttendRow(_layer, _batch!.Cache(row), _batch.Workspace(row), _batch.Plan(row), _batch.Position(row), _observer);
    }

    /// <summary>RoPE on a row's q and k at position `pos`, and its k and v written to the cache there.</summary>
    private void Append(int layer, KvCache cache, DecodeWorkspace ws, int pos)
    {
        var c = Config;
        _rope.Apply(ws.Q, c.NumHeads, pos);
        _rope.Apply(ws.K, c.NumKvHeads, pos);
        cache.Write(layer, pos, ws.K, ws.V);
    }

    /// <summary>One row's attention in layer `layer` at position `pos`: its q and k rotated and k and v appended
    /// there (<see cref="Append"/>), the plan's selection (if any), then attention over the selected (or all)
    /// positions up to `pos`.</summary>
    private void AttendRow(int layer, KvCache cache, DecodeWorkspace ws, SpanPlanOps? plan, int pos, IAttentionObserver? observer)
    {
        Append(layer, cache, ws, pos);

        long t0 = Stopwatch.GetTimestamp();
        var sel = ws.Selection;
        sel.Dense = true;
        long scored = 0;
        if (plan is not null)
        {
            ws.Backend.Bind(layer, ws.Q, pos + 1);
            plan.Select(ws.Backend, sel);
            scored = ws.Backend.KeysScored;
        }
        long t1 = Stopwatch.GetTimestamp();
        DecodeAttention(cache, layer, ws, pos + 1, Config, AttentionScale);
        long t2 = Stopwatch.GetTimestamp();
        if (observer is not null)
        {
            Observe(cache, layer, ws, pos + 1, observer);
            observer.OnLayer(layer, pos + 1, scored, sel.Dense, (t1 - t0) / (double)Stopwatch.Frequency, (t2 - t1) / (double)Stopwatch.Frequency);
        }
    }

    /// <summary>Attention of ws.Q over positions [0, n) of the layer, or over ws.Selection's lists when it is sparse:
    /// grouped by KV head (dense, or lists per KV head) or head by head (lists per query head), into ws.Att. The
    /// decode step's attention; <see cref="AttentionOperatorBench"/> times it.</summary>
    internal static void DecodeAttention(KvCache cache, int layer, DecodeWorkspace ws, int n, ModelConfig c, float scale)
    {
        var sel = ws.Selection;
        int group = c.GroupSize, d = c.HeadDim;
        if (sel.Dense || sel.Granularity == SelectionGranularity.KvHead)
        {
            ws.Grouped.Run(cache, layer, ws.Q, ws.Att, n, scale, sel);
            return;
        }
        var job = ws.PerHeadAttention;
        job.Bind(cache, layer, ws, group, d, scale);
        WorkerPool.Shared.Run(job, c.NumHeads);
        job.Bind(null, 0, null, 0, 0, 0);
    }

    /// <summary>Sparse attention selected per query head: each head over its own list.</summary>
    internal sealed class PerHeadAttentionJob : ParallelWork
    {
        private KvCache? _cache;
        private DecodeWorkspace? _ws;
        private int _layer, _group, _d;
        private float _scale;

        public void Bind(KvCache? cache, int layer, DecodeWorkspace? ws, int group, int d, float scale) =>
            (_cache, _layer, _ws, _group, _d, _scale) = (cache, layer, ws, group, d, scale);

        public override void Execute(int h, int worker)
        {
            var indices = _ws!.Selection.Indices(h);
            var scratch = _ws.HeadScratch(h, indices.Length);
            fixed (float* q = _ws.Q, o = _ws.Att)
                AttentionKernels.Attend(_cache!, _layer, h / _group, q + h * _d, indices, _scale, scratch, o + h * _d);
        }
    }

    private void Observe(KvCache cache, int layer, DecodeWorkspace ws, int n, IAttentionObserver observer)
    {
        var c = Config;
        int d = c.HeadDim;
        var probs = ws.ObserverScratch(n);
        // the dense output through the engine's own dense kernel, so a dense step measures an error of exactly 0
        var dense = ws.ObserverDenseOutput;
        ws.Grouped.Run(cache, layer, ws.Q, dense, n, AttentionScale);
        for (int h = 0; h < c.NumHeads; h++)
        {
            fixed (float* q = ws.Q)
            {
                AttentionKernels.ScoresAll(cache, layer, h / c.GroupSize, q + h * d, n, AttentionScale, probs);
                Logits.Softmax(probs[..n]);
            }
            var sel = ws.Selection;
            int sh = sel.Granularity == SelectionGranularity.QueryHead ? h : h / c.GroupSize;
            observer.OnHead(new HeadObservation
            {
                Layer = layer,
                Head = h,
                DenseProbabilities = probs[..n],
                Selected = sel.Dense ? default : sel.Indices(sh),
                SparseOutput = ws.Att.AsSpan(h * d, d),
                DenseOutput = dense.AsSpan(h * d, d),
            });
        }
    }

    public void Dispose() => _weights.Dispose();
}
