namespace SparseDecode.Cuda;

/// <summary>One sequence decoded on the GPU: prefill through the model's chunked tensor-core prefill
/// (<see cref="GpuPrefill"/>), then one token per step through a captured CUDA graph that is replayed with the new
/// token and position written into device memory. Logits come back to the host for sampling. A method written as a selection
/// plan runs inside that graph (<see cref="PlanAttention"/>: its state on the device, no host round trip); PrHS,
/// still a host policy, runs on the host against the GPU selection backend (no graph). Prefill keeps Quest's page
/// summaries for the methods that read them.</summary>
public sealed class GpuDecodeSession : IDisposable
{
    private readonly GpuModel _model;
    private readonly GpuKvCache _cache;
    private readonly CudaStream _stream;
    private readonly ILayerAttention? _prefillAttention;
    private readonly SelectorAttention? _selectorAttention;
    private readonly PlanAttention? _planAttention;
    private CudaGraph? _graph;
    private readonly float[] _logits;
    private readonly int[] _slots = new int[ModelKernels.MaxRows];
    private readonly int[] _positions = new int[ModelKernels.MaxRows];

    public int Length { get; private set; }
    /// <summary>Decode through the captured graph (default without a selector), or launch the step's kernels one by one.</summary>
    public bool UseGraph { get; init; } = true;
    public int Capacity => _cache.Capacity;
    public int VocabSize => _model.Config.VocabSize;
    /// <summary>The device-resident method, when the session decodes through a plan.</summary>
    public PlanAttention? Plan => _planAttention;

    public GpuDecodeSession(GpuModel model, int capacity, Selection.IKvSelector? selector = null)
    {
        _model = model;
        _cache = new GpuKvCache(model.Device, model.Config, 1, Math.Min(capacity, model.Capacity));
        _stream = new CudaStream(model.Device);
        if (selector is Selection.PlanSelector { Plan: var plan })
        {
            if (plan.ReadsPageSummaries) _prefillAttention = new SummaryKeepingAttention(_cache);
            _planAttention = new PlanAttention(model, _cache, plan, 1);
            _planAttention.Reset(_stream);
        }
        else if (selector != null)
        {
            _prefillAttention = new SummaryKeepingAttention(_cache);
            _selectorAttention = new SelectorAttention(model, _cache, _stream, selector);
            UseGraph = false;
        }
        _logits = new float[ModelKernels.MaxRows * model.Config.VocabSize];
    }

    /// <summary>Runs tokens at positions Length.. through the model; `onLogits(i, logits)` sees token i's
    /// next-token logits (null: only the last token's are kept, in <see cref="LastLogits"/>). Runs as the model's
    /// chunked tensor-core prefill (<see cref="GpuPrefill"/>); heads it does not take go through decode steps of up
    /// to 8 rows.</summary>
    public void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? onLogits = null)
    {
        CheckRoom(tokens.Length);
        if (tokens.IsEmpty) return;
        if (_model.Prefill is { } prefill)
        {
            prefill.Run(_cache, _slots[0], tokens, Length, _logits.AsSpan(0, VocabSize), onLogits, _stream);
            Length += tokens.Length;
            _lastRow = 0;
            return;
        }
        int v = VocabSize;
        for (int c0 = 0; c0 < tokens.Length; c0 += ModelKernels.MaxRows)
        {
            int n = Math.Min(ModelKernels.MaxRows, tokens.Length - c0);
            for (int r = 0; r < n; r++) _positions[r] = Length + r;
            _model.Forward(_cache, _slots.AsSpan(0, n), tokens.Slice(c0, n), _positions.AsSpan(0, n), _logits, _stream, _prefillAttention);
            if (onLogits != null)
                for (int r = 0; r < n; r++) onLogits(c0 + r, _logits.AsSpan(r * v, v));
            Length += n;
            _lastRow = n - 1;
        }
    }

    private int _lastRow;

    /// <summary>Next-token logits of the last token run.</summary>
    public ReadOnlySpan<float> LastLogits => _logits.AsSpan(_lastRow * VocabSize, VocabSize);

    /// <summary>One decode step of `token` at position Length through the captured graph; returns its logits.</summary>
    public ReadOnlySpan<float> Decode(int token)
    {
        CheckRoom(1);
        if ((uint)token >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(token), $"Token id {token} is outside the vocabulary of {VocabSize}.");
        _positions[0] = Length;
        _cache.SetRows(_slots.AsSpan(0, 1), [token], _positions.AsSpan(0, 1), _stream);
        if (_selectorAttention != null)
        {
            _selectorAttention.Position = Length;
            _model.EnqueueStep(_cache, 1, _cache.Capacity, _stream, _selectorAttention);
        }
        else if (UseGraph)
        {
            _graph ??= _stream.Capture(() => _model.EnqueueStep(_cache, 1, _cache.Capacity, _stream, _planAttention));
            _graph.Launch(_stream);
        }
        else _model.EnqueueStep(_cache, 1, _cache.Capacity, _stream, _planAttention);
        _stream.Synchronize();
        _model.Logits.Download(_logits.AsSpan(0, VocabSize));
        Length++;
        _lastRow = 0;
        return LastLogits;
    }

    private void CheckRoom(int n)
    {
        if (Length + n > Capacity)
            throw new Engine.ContextOverflowException($"The sequence needs {Length + n} positions but the GPU cache holds {Capacity}.");
    }

    public void Dispose()
    {
        _graph?.Dispose();
        _selectorAttention?.Dispose();
        _planAttention?.Dispose();
        _stream.Dispose();
        _cache.Dispose();
    }
}
