using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Selection;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cuda;

/// <summary>The GPU backend of <see cref="IInferenceEngine"/>: a checkpoint's weights on the device, one bf16 KV
/// cache of `slots` sequence slots of `capacity` positions each, and one stream that every sequence's work is
/// queued on. A sequence occupies a slot until disposed. One decode step advances every sequence of a batch, whatever
/// its method: the rows are ordered dense first, then by plan (<see cref="PlanGroup"/>: sequences made with the same
/// plan object share its kernels and scratch and keep their own state by slot); the weight products run once over all
/// rows and each plan's operations over its own rows. The step is captured into a CUDA graph once per composition
/// (rows per plan) and replayed with the rows' tokens, positions and slots written into device memory.</summary>
internal sealed class GpuEngine : IInferenceEngine
{
    /// <summary>Composed step graphs kept at once; past this many, all are dropped and captured again as met.</summary>
    private const int MaxGraphs = 64;
    /// <summary>Plan groups with no live sequence kept for the next sequence with that plan.</summary>
    private const int MaxIdleGroups = 8;

    private readonly bool[] _used;
    /// <summary>A captured step: its dense rows, its parts (group, rows) in row order, whether its rows are dense passes
    /// (<see cref="DecodeRun"/>), and its graph.</summary>
    private sealed record ComposedStep(int Dense, (PlanGroup Group, int Rows)[] Parts, bool Passes, CudaGraph Graph)
    {
        public bool Is(int dense, List<(PlanGroup Group, int Rows)> parts, bool passes) =>
            Dense == dense && Passes == passes && Parts.AsSpan().SequenceEqual(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(parts));
    }

    private readonly List<ComposedStep> _graphs = [];
    private readonly Dictionary<SelectionPlan, PlanGroup> _groups = new(ReferenceEqualityComparer.Instance);
    private int _nextGroupId = 1;
    private long _steps;
    // one step's rows, reused from step to step: order keys, sessions, and per row slot, token, position, session
    // (−1: padding) and logits
    private readonly long[] _order;
    private readonly GpuDecodeSession[] _rows;
    private readonly int[] _slots, _tokens, _positions, _rowSession;
    private readonly float[] _logits;
    private readonly List<(PlanGroup Group, int Rows)> _parts = [];
    private SelectionKernels? _selection;
    // the device draws of DecodeAndSample, made at its first call, and each row's token
    private SamplingKernels? _sampling;
    private readonly int[] _drawn;

    public CudaDevice Device { get; }
    public DecodeKernels DecodeKernels { get; }
    public ModelKernels ModelKernels { get; }
    public GpuWeights Weights { get; }
    public GpuModel Model { get; }
    public GpuKvCache Cache { get; }
    public CudaStream Stream { get; }
    public ModelConfig Config => Model.Config;
    public string DeviceName => Device.Name;
    public int MaxContext => Cache.Capacity;
    public int Slots => Cache.Slots;
    public bool ConcurrentSequences => false;
    public bool SupportsObserver => false;

    /// <summary>Loads `directory` onto the first GPU for sequences of up to `capacity` positions (capped at the
    /// model's context), `slots` of them at a time, the steps' products at `decodePrecision`. No driver or GPU: a
    /// <see cref="CudaException"/> in one sentence.</summary>
    public static GpuEngine Load(string directory, int capacity, int slots = 1, bool? kvOnDemand = null,
        ProductPrecision decodePrecision = ProductPrecision.Split)
    {
        var config = ModelConfig.Load(directory);
        var device = CudaDevice.Open();
        try
        {
            using var store = WeightStore.Open(directory);
            return new GpuEngine(device, GpuWeights.Upload(device, store, config), capacity, slots, kvOnDemand: kvOnDemand,
                decodePrecision: decodePrecision);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    private readonly bool _ownsDevice;

    /// <summary>An engine over weights already on `device`; with ownsDevice it disposes both with itself. kvOnDemand:
    /// see <see cref="EngineOptions.KvOnDemand"/> (null: where it saves memory, or where the slots allocated whole would
    /// not fit, and the driver can). decodePrecision: the operands of the steps' weight products
    /// (<see cref="EngineOptions.DecodePrecision"/>).</summary>
    public GpuEngine(CudaDevice device, GpuWeights weights, int capacity, int slots = 1, bool ownsDevice = true, bool? kvOnDemand = null,
        ProductPrecision decodePrecision = ProductPrecision.Split)
    {
        _ownsDevice = ownsDevice;
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        Device = device;
        Weights = weights;
        long pageBytes = DevicePagePool.Granularity(device);
        if (kvOnDemand == true && pageBytes == 0)
            throw new CudaException($"The CUDA driver on {device.Name} cannot map memory on demand (no virtual memory management); load with the KV cache allocated whole.");
        var layout = new KvPageLayout(weights.Config, Math.Min(capacity, weights.Config.MaxPositions), 16, pageBytes);
        bool onDemand = kvOnDemand ?? layout.OnDemandByDefault(GpuKvCache.BytesFor(weights.Config, slots, layout.Capacity), CacheRoom(device));
        if (!onDemand) CheckCacheFits(device, weights.Config, layout.Capacity, slots);
        DecodeKernels = new DecodeKernels(device);
        ModelKernels = new ModelKernels(device, GemvOptions.For(decodePrecision));
        StepRows = slots;
        // room for every sequence and the padding of its part, for up to four parts at once
        RowCapacity = Bucket(slots) + 4 * ModelKernels.MaxRows;
        Model = new GpuModel(DecodeKernels, ModelKernels, weights, capacity, maxRows: RowCapacity);
        Cache = onDemand ? new GpuKvCache(device, weights.Config, slots, Model.Capacity, RowCapacity, 16, PoolPages(device, layout with { Capacity = Model.Capacity }, slots), pageBytes)
            : new GpuKvCache(device, weights.Config, slots, Model.Capacity, maxRows: RowCapacity);
        Stream = new CudaStream(device);
        _used = new bool[slots];
        _order = new long[slots];
        _rows = new GpuDecodeSession[slots];
        (_slots, _tokens, _positions, _rowSession) = (new int[RowCapacity], new int[RowCapacity], new int[RowCapacity], new int[RowCapacity]);
        _logits = new float[(long)RowCapacity * weights.Config.VocabSize];
        _drawn = new int[RowCapacity];
    }

    /// <summary>Whether a step's parts are padded to their <see cref="Bucket"/> (default); off, each part has exactly
    /// its sequences' rows (the contract check compares the two).</summary>
    internal bool PadParts { get; set; } = true;

    /// <summary>Rows one decode step may have, padding included.</summary>
    public int RowCapacity { get; }

    /// <summary>What the KV cache may take: nine tenths of the GPU's free memory, the rest left for the step's
    /// activations, plans and prefill.</summary>
    private static long CacheRoom(CudaDevice device) => (long)(device.MemoryInfo().Free * 0.9);

    /// <summary>Refuses, before anything is allocated, a cache that would leave under a tenth of the GPU's free memory
    /// for the step's activations, plans and prefill, saying how many sequences of that context (or how long a
    /// context for that many) would fit.</summary>
    private static void CheckCacheFits(CudaDevice device, ModelConfig config, int capacity, int slots)
    {
        long need = GpuKvCache.BytesFor(config, slots, capacity);
        long room = CacheRoom(device);
        if (need <= room) return;
        long perSlot = GpuKvCache.BytesFor(config, 1, capacity);
        long fitPositions = room / Math.Max(1, GpuKvCache.BytesFor(config, slots, 1));
        throw new CudaException($"{slots} sequence slots of {capacity} positions need {need / 1e9:F1} GB of KV cache, but {device.Name} has " +
            $"{room / 1e9:F1} GB to spare after the weights: at most {room / perSlot} slots of {capacity} positions, or {slots} of about " +
            $"{fitPositions} (serve: --max-batch and --context).");
    }

    /// <summary>Pages of a cache on demand: what every slot at full capacity with page summaries would map, or as many as
    /// fit in nine tenths of the GPU's free memory, leaving the rest for the step's activations, plans and prefill.
    /// Refuses, before anything is allocated, a pool that could not hold one sequence of the full context.</summary>
    private static int PoolPages(CudaDevice device, KvPageLayout layout, int slots)
    {
        long perSequence = layout.PagesFor(layout.Capacity, summaries: true);
        long fit = CacheRoom(device) / layout.PageBytes;
        if (fit < perSequence)
            throw new CudaException($"One sequence of {layout.Capacity} positions needs {perSequence * layout.PageBytes / 1e9:F1} GB of KV cache, but {device.Name} has " +
                $"{fit * layout.PageBytes / 1e9:F1} GB to spare after the weights (serve: --context).");
        return (int)Math.Min(Math.Min(fit, slots * perSequence), int.MaxValue);
    }

    /// <summary>Sequences one decode step takes: every sequence the cache holds.</summary>
    public int StepRows { get; }

    /// <summary>The selection kernels, loaded once for every sequence that decodes through a plan.</summary>
    internal SelectionKernels Selection => _selection ??= new SelectionKernels(Device);

    public IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null) => Create(capacity, plan, alias: -1);

    /// <summary>A sequence of `capacity` positions whose memory below `shared` is slot `shareFrom`'s, by whole pages
    /// where the cache is on demand (<see cref="GpuKvCache.TryHold"/>).</summary>
    internal GpuDecodeSession CreateSharing(int shareFrom, int shared, int capacity, SelectionPlan? plan) => Create(capacity, plan, -1, shareFrom, shared);

    public bool HasRoomFor(int capacity, SelectionPlan? plan = null) => HasRoom(capacity, plan, shared: 0);

    public bool HasRoomForFork(IDecodeSequence source, int length, int capacity, SelectionPlan? plan = null) =>
        HasRoom(capacity, plan, source is GpuDecodeSession { Engine: var e } && e == this ? length : 0);

    /// <summary>A free slot, and free pages for `capacity` positions of which the pages wholly below `shared` are
    /// another sequence's.</summary>
    private bool HasRoom(int capacity, SelectionPlan? plan, int shared) =>
        Array.IndexOf(_used, false) >= 0
        && (!Cache.OnDemand || Cache.FreePages >= Cache.PagesFor(Math.Clamp(capacity, 1, MaxContext), plan?.ReadsPageSummaries == true, shared));

    public (long Total, long Free) KvPool => Cache.OnDemand ? (Cache.KvBytes, Cache.FreePages * Cache.PoolPageBytes) : (0, 0);

    /// <summary>A sequence in a free slot whose memory is mapped for `capacity` positions (page summaries when the
    /// plan reads them), or, with `alias`, the memory of that slot's sequence shared (warm-up only).</summary>
    private GpuDecodeSession Create(int capacity, SelectionPlan? plan, int alias, int shareFrom = -1, int shared = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        if (capacity > MaxContext)
            throw new ContextOverflowException($"The sequence needs {capacity} positions but the GPU cache holds {MaxContext} per sequence.");
        plan?.CheckFits(Config, capacity);
        int slot = Array.IndexOf(_used, false);
        if (slot < 0)
            throw new KvCacheFullException($"All {Slots} sequence slots of the GPU cache are in use; free a sequence or load the engine with more slots.");
        bool summaries = plan?.ReadsPageSummaries == true;
        if (!Cache.TryHold(slot, capacity, summaries, alias, shareFrom, shared))
            throw new KvCacheFullException($"A sequence of {capacity} positions needs {Cache.PagesFor(capacity, summaries, shareFrom >= 0 ? shared : 0)} pages of the GPU's KV cache pool, " +
                $"but {Cache.FreePages} of {Cache.PoolPages} are free; room comes back as sequences end.");
        var group = plan is null ? null : GroupFor(plan);
        _used[slot] = true;
        try
        {
            group?.ResetSlot(slot, Stream);
            var seq = new GpuDecodeSession(this, slot, capacity, group);
            if (group != null) group.Sequences++;
            return seq;
        }
        catch
        {
            _used[slot] = false;
            Cache.Release(slot);
            throw;
        }
    }

    /// <summary>The group of `plan`: kept while sequences use it and a while after (<see cref="MaxIdleGroups"/>).</summary>
    private PlanGroup GroupFor(SelectionPlan plan)
    {
        if (_groups.TryGetValue(plan, out var group)) return group;
        var idle = _groups.Values.Where(g => g.Sequences == 0).OrderBy(g => g.Id).ToList();
        for (int i = 0; i < idle.Count - MaxIdleGroups + 1; i++) Drop(idle[i]);
        group = new PlanGroup(_nextGroupId++, Model, Cache, plan, Bucket(StepRows), Slots, Selection, Stream);
        _groups.Add(plan, group);
        return group;
    }

    private void Drop(PlanGroup group)
    {
        foreach (var e in _graphs.Where(e => e.Parts.Any(p => p.Group == group))) e.Graph.Dispose();
        _graphs.RemoveAll(e => e.Parts.Any(p => p.Group == group));
        _groups.Remove(group.Plan);
        group.Dispose();
    }

    internal void Release(int slot, PlanGroup? group)
    {
        _used[slot] = false;
        if (group != null) group.Sequences--;
        if (Cache.OnDemand)
        {
            // the pages are unmapped: no queued work may still touch them
            Stream.Synchronize();
            Cache.Release(slot);
        }
    }

    public void DecodeBatch(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length != sequences.Count) throw new ArgumentException($"{sequences.Count} sequences but {tokens.Length} tokens.");
        if (sequences.Count > StepRows) throw new ArgumentException($"{sequences.Count} sequences in one step; the engine holds {StepRows}.");
        for (int i = 0; i < sequences.Count; i++)
            _rows[i] = Own(sequences[i]);
        Step(sequences.Count, tokens, useGraph: true);
    }

    /// <summary>The step of <see cref="DecodeBatch"/>, then every row's next token drawn on the device from the logits
    /// the step left there (sampling.cu, as <see cref="Sampler.Next"/> draws): only the tokens come back, and the
    /// logits of the rows that keep them or whose draw is left to the caller.</summary>
    public void DecodeAndSample(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens, IReadOnlyList<Sampler?> samplers,
        ReadOnlySpan<bool> keepLogits, Span<int> next)
    {
        int n = sequences.Count;
        IInferenceEngine.CheckDraws(n, tokens.Length, samplers.Count, keepLogits.Length, next.Length);
        if (n > StepRows) throw new ArgumentException($"{n} sequences in one step; the engine holds {StepRows}.");
        for (int i = 0; i < n; i++)
            _rows[i] = Own(sequences[i]);
        int rows = Step(n, tokens, useGraph: true, download: false);
        var sampling = _sampling ??= new SamplingKernels(Device, RowCapacity);
        // a sampler that adjusts the logits (penalties from the tokens it has drawn, a bias) draws on the host
        for (int r = 0; r < rows; r++)
            sampling.Set(r, _rowSession[r] >= 0 && samplers[_rowSession[r]] is { Options.AdjustsLogits: false } sampler ? sampler : null);
        sampling.Draw(Model.Logits, Config.VocabSize, rows, _drawn, Stream);
        int v = Config.VocabSize;
        for (int r = 0; r < rows; r++)
        {
            if (_rowSession[r] is not (>= 0 and var i)) continue;
            next[i] = _drawn[r];
            if (_drawn[r] >= 0 && !keepLogits[i])
            {
                _rows[i].AdvanceDrawn();
                continue;
            }
            var row = _logits.AsSpan(r * v, v);
            Model.Logits.Download(row, (long)r * v * sizeof(float));
            _rows[i].Advance(1, row);
        }
    }

    private readonly List<GpuPrefill.Segment> _segments = [];
    private readonly List<GpuDecodeSession> _prefilling = [];
    private Action<int, ReadOnlySpan<float>>? _acceptPrefill;

    /// <summary>The sequences' tokens through the model's prefill as passes of every sequence's tokens together
    /// (<see cref="GpuPrefill.RunBatch"/>); every sequence is checked before any work. A model whose heads the prefill
    /// does not take prefills each sequence in turn.</summary>
    public void PrefillBatch(IReadOnlyList<IDecodeSequence> sequences, IReadOnlyList<ReadOnlyMemory<int>> tokens)
    {
        if (tokens.Count != sequences.Count) throw new ArgumentException($"{sequences.Count} sequences but {tokens.Count} token runs.");
        _segments.Clear();
        _prefilling.Clear();
        for (int i = 0; i < sequences.Count; i++)
        {
            var seq = Own(sequences[i]);
            if (_prefilling.Contains(seq)) throw new ArgumentException($"Sequence {i} appears twice in one prefill.");
            seq.CheckRun(tokens[i].Span);
            _segments.Add(new GpuPrefill.Segment(seq.Slot, tokens[i], seq.Length));
            _prefilling.Add(seq);
        }
        if (Model.Prefill is not { } prefill)
        {
            for (int i = 0; i < sequences.Count; i++) sequences[i].Prefill(tokens[i].Span);
            return;
        }
        prefill.RunBatch(Cache, _segments, _acceptPrefill ??= (i, logits) => _prefilling[i].Advance(_segments[i].Tokens.Length, logits), Stream);
    }

    /// <summary>Makes `plan`'s group and captures the step of each part size (<see cref="Bucket"/>) up to `sequences`
    /// rows of it: a batch of that many empty sequences decodes one token at position 0. Loads the device draws'
    /// kernels.</summary>
    public void WarmUp(SelectionPlan? plan, int sequences)
    {
        int most = Math.Min(sequences, _used.Count(u => !u));
        _sampling ??= new SamplingKernels(Device, RowCapacity);
        var batch = new List<IDecodeSequence>();
        try
        {
            for (int size = 1; size <= most; size = Bucket(size + 1))
            {
                // on demand, every sequence after the first shares the first's pages: their results are thrown away
                while (batch.Count < size) batch.Add(Create(1, plan, batch.Count == 0 ? -1 : ((GpuDecodeSession)batch[0]).Slot));
                DecodeBatch(batch, new int[size]);
                foreach (var s in batch) s.Truncate(0);
            }
        }
        finally
        {
            foreach (var s in batch) s.Dispose();
        }
    }

    /// <summary>One sequence's step, through the same composed step (no per-token allocation).</summary>
    internal void Decode(GpuDecodeSession seq, int token, bool useGraph)
    {
        _rows[0] = seq;
        Step(1, [token], useGraph);
    }

    /// <summary>Rows a part of `n` rows takes in a step: the next power of two up to 8, then the next multiple of 8.
    /// Padding parts to these few sizes keeps the number of step graphs small as sequences come and go.</summary>
    internal static int Bucket(int n) => n <= ModelKernels.MaxRows ? (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)n) : (n + 7) / 8 * 8;

    /// <summary>The step of sessions _rows[0 .. n) with tokens[i]: rows ordered dense first, then by group, each part
    /// padded to its <see cref="Bucket"/> with copies of its last row (the same token at the same position of the same
    /// slot: they compute and write what that row does, and their results are dropped); one graph launch (or its
    /// kernels one by one), one copy of every row's logits to the host, which advances the sequences (without
    /// `download`, the logits stay on the device and the caller advances them). Returns the rows run.</summary>
    private int Step(int n, ReadOnlySpan<int> tokens, bool useGraph, bool download = true)
    {
        long step = ++_steps;
        for (int i = 0; i < n; i++)
        {
            var seq = _rows[i];
            if (seq.LastStep == step) throw new ArgumentException("A sequence appears twice in one decode step.");
            seq.CheckRun(tokens.Slice(i, 1));
            seq.LastStep = step;
            _order[i] = (long)(seq.Group?.Id ?? 0) << 32 | (uint)i;
        }
        Array.Sort(_order, 0, n);
        // the rows in step order, and the composition: dense rows, then (group, rows) in increasing group id
        _parts.Clear();
        int rows = 0, dense = 0;
        for (int first = 0; first < n;)
        {
            var group = _rows[(int)(_order[first] & 0xFFFFFFFF)].Group;
            int end = first;
            while (end < n && _rows[(int)(_order[end] & 0xFFFFFFFF)].Group == group) end++;
            int count = end - first, padded = Bucket(count);
            // padding only while the step's buffers have room for it (many parts at once: exact counts)
            if (!PadParts || rows + padded + (n - end) > RowCapacity) padded = count;
            for (int j = 0; j < padded; j++)
            {
                int i = (int)(_order[first + Math.Min(j, count - 1)] & 0xFFFFFFFF);
                var seq = _rows[i];
                (_slots[rows], _tokens[rows], _positions[rows]) = (seq.Slot, tokens[i], seq.Length);
                _rowSession[rows] = j < count ? i : -1;
                if (j < count) seq.LastRow = j;
                rows++;
            }
            if (group is null) dense = padded;
            else _parts.Add((group, padded));
            first = end;
        }
        foreach (var (g, _) in _parts) g.LastStep = step;
        Run(rows, dense, useGraph, download);
        if (!download) return rows;
        int v = Config.VocabSize;
        for (int r = 0; r < rows; r++)
            if (_rowSession[r] >= 0) _rows[_rowSession[r]].Advance(1, _logits.AsSpan(r * v, v));
        return rows;
    }

    /// <summary>Runs the step whose rows are in _slots, _tokens, _positions (and composition `dense`, <see cref="_parts"/>)
    /// and, with `download`, copies every row's logits to <see cref="_logits"/> (otherwise only queues it). `passes`:
    /// the rows are dense passes, runs of one sequence's consecutive positions.</summary>
    private void Run(int rows, int dense, bool useGraph, bool download = true, bool passes = false)
    {
        Cache.SetRows(_slots.AsSpan(0, rows), _tokens.AsSpan(0, rows), _positions.AsSpan(0, rows), Stream);
        if (useGraph) GraphFor(rows, dense, passes).Launch(Stream);
        else Model.EnqueueStep(Cache, rows, Cache.Capacity, Stream, Attention(dense), passes);
        if (!download) return;
        Stream.Synchronize();
        Model.Logits.Download(_logits.AsSpan(0, rows * Config.VocabSize));
    }

    /// <summary>`tokens` at `seq`'s next positions as the dense rows of one step (the step of a dense batch of that
    /// many rows, padded like one): each row attends to every position up to its own, those of the rows before it
    /// included, so row i's logits are what a dense decode step of token i gives after the tokens before it, as a row
    /// of a batched step. The plan's state is untouched. Fills logits [tokens][vocab] and advances the sequence.</summary>
    internal void DecodeRun(GpuDecodeSession seq, ReadOnlySpan<int> tokens, Span<float> logits, bool useGraph)
    {
        int n = tokens.Length;
        if (n > RowCapacity) throw new ArgumentException($"A dense pass of {n} tokens; one step of this engine takes {RowCapacity} rows.", nameof(tokens));
        long step = ++_steps;
        int rows = Pad(AddRun(seq, tokens, logits.Length, 0, step));
        Run(rows, rows, useGraph, passes: true);
        TakeRun(seq, n, 0, logits);
    }

    /// <summary>Speculative decoding's dense passes of several sequences as the rows of as few steps as hold them: each
    /// sequence's tokens are consecutive rows of its slot (<see cref="DecodeRun"/>), so the weights are read once per
    /// step for every sequence's pass.</summary>
    public void DecodeDenseBatch(IReadOnlyList<IDecodeSequence> sequences, IReadOnlyList<ReadOnlyMemory<int>> tokens, IReadOnlyList<Memory<float>> logits)
    {
        if (tokens.Count != sequences.Count || logits.Count != sequences.Count)
            throw new ArgumentException($"{sequences.Count} sequences but {tokens.Count} token runs and {logits.Count} logit spans.");
        for (int first = 0; first < sequences.Count;)
        {
            long step = ++_steps;
            int rows = 0, end = first;
            while (end < sequences.Count && rows + tokens[end].Length <= RowCapacity)
            {
                rows = AddRun(Own(sequences[end]), tokens[end].Span, logits[end].Length, rows, step);
                end++;
            }
            if (end == first) throw new ArgumentException($"A dense pass of {tokens[first].Length} tokens; one step of this engine takes {RowCapacity} rows.");
            rows = Pad(rows);
            Run(rows, rows, useGraph: true, passes: true);
            for (int at = 0; first < end; first++)
            {
                TakeRun((GpuDecodeSession)sequences[first], tokens[first].Length, at, logits[first].Span);
                at += tokens[first].Length;
            }
        }
    }

    /// <summary>Rows a dense step of `rows` rows runs: its <see cref="Bucket"/> while the step's buffers hold it.</summary>
    private int Pad(int rows)
    {
        int padded = PadParts ? Math.Min(Bucket(rows), RowCapacity) : rows;
        // padding: copies of the last row (the same token at the same position of the same slot)
        for (int r = rows; r < padded; r++) (_slots[r], _tokens[r], _positions[r]) = (_slots[rows - 1], _tokens[rows - 1], _positions[rows - 1]);
        _parts.Clear();
        return padded;
    }

    /// <summary>Checks `seq` and puts its pass's rows at rows `at` ..; returns the rows filled so far.</summary>
    private int AddRun(GpuDecodeSession seq, ReadOnlySpan<int> tokens, int logitsLength, int at, long step)
    {
        int n = tokens.Length, v = Config.VocabSize;
        if (n < 1) throw new ArgumentException("A dense pass runs at least one token.", nameof(tokens));
        if (logitsLength < (long)n * v) throw new ArgumentException($"{n} tokens need {n * v} logits, the span holds {logitsLength}.");
        if (seq.LastStep == step) throw new ArgumentException("A sequence appears twice in one step.");
        seq.CheckRun(tokens);
        seq.LastStep = step;
        for (int i = 0; i < n; i++) (_slots[at + i], _tokens[at + i], _positions[at + i]) = (seq.Slot, tokens[i], seq.Length + i);
        return at + n;
    }

    /// <summary>The `n` rows from `at` of the step just run are `seq`'s pass: their logits, and the sequence advanced.</summary>
    private void TakeRun(GpuDecodeSession seq, int n, int at, Span<float> logits)
    {
        int v = Config.VocabSize;
        _logits.AsSpan(at * v, n * v).CopyTo(logits);
        seq.AcceptRun(n, logits.Slice((n - 1) * v, v));
    }

    /// <summary>`sequence` as one of this engine's sessions; one of another engine is refused.</summary>
    private GpuDecodeSession Own(IDecodeSequence sequence)
    {
        var seq = sequence as GpuDecodeSession ?? throw new ArgumentException("A sequence of another engine was passed to the GPU engine.");
        return seq.Engine == this ? seq : throw new ArgumentException("A sequence of another GPU engine was passed to this one.");
    }

    private StepAttention? Attention(int dense) => _parts.Count == 0 ? null : new StepAttention(Model, Cache, dense, _parts);

    /// <summary>The step graph of the current composition (`dense` rows, then <see cref="_parts"/>; dense passes or
    /// not), captured at its first use.</summary>
    private CudaGraph GraphFor(int rows, int dense, bool passes)
    {
        foreach (var e in _graphs)
            if (e.Is(dense, _parts, passes)) return e.Graph;
        if (_graphs.Count >= MaxGraphs)
        {
            foreach (var e in _graphs) e.Graph.Dispose();
            _graphs.Clear();
        }
        var attention = Attention(dense);
        var graph = Stream.Capture(() => Model.EnqueueStep(Cache, rows, Cache.Capacity, Stream, attention, passes));
        _graphs.Add(new ComposedStep(dense, [.. _parts], passes, graph));
        return graph;
    }

    public void Dispose()
    {
        foreach (var e in _graphs) e.Graph.Dispose();
        foreach (var g in _groups.Values) g.Dispose();
        _selection?.Dispose();
        _sampling?.Dispose();
        Stream.Dispose();
        Cache.Dispose();
        Model.Dispose();
        ModelKernels.Dispose();
        DecodeKernels.Dispose();
        if (!_ownsDevice) return;
        Weights.Dispose();
        Device.Dispose();
    }
}
