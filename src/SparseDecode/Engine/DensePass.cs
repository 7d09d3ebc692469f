namespace SparseDecode.Engine;

/// <summary>Tokens run densely at a sequence's next positions as one pass, every row's next-token logits kept: the
/// engine's decode-step arithmetic where the sequence is an <see cref="ISpeculativeSequence"/>, else its prefill
/// (<see cref="IDecodeSequence.Prefill"/> with every row's logits). What speculative decoding verifies with and
/// TidalDecode's cache correction refills with. Sized once for `maxRows`: a pass allocates nothing.</summary>
internal sealed class DensePass
{
    private readonly int _vocab;
    private readonly float[] _rows;
    private readonly Action<int, ReadOnlySpan<float>> _keepRow;

    public DensePass(int vocab, int maxRows)
    {
        _vocab = vocab;
        _rows = new float[maxRows * vocab];
        _keepRow = (i, logits) => logits.CopyTo(_rows.AsSpan(i * _vocab, _vocab));
    }

    /// <summary>Runs `tokens` at positions sequence.Length..; returns whether the pass was the decode step's
    /// arithmetic (<see cref="ISpeculativeSequence.DecodeDense"/>) rather than the prefill's.</summary>
    public bool Run(IDecodeSequence sequence, ReadOnlySpan<int> tokens)
    {
        if (tokens.Length * _vocab > _rows.Length) throw new ArgumentException($"The pass holds {_rows.Length / _vocab} rows, not {tokens.Length}.", nameof(tokens));
        if (sequence is ISpeculativeSequence exact)
        {
            exact.DecodeDense(tokens, _rows);
            return true;
        }
        sequence.Prefill(tokens, _keepRow);
        return false;
    }

    /// <summary>Where the first `n` rows' logits go, for a pass run by the caller.</summary>
    public Memory<float> Rows(int n) => _rows.AsMemory(0, n * _vocab);

    /// <summary>Row i's next-token logits from the last pass.</summary>
    public ReadOnlySpan<float> Row(int i) => _rows.AsSpan(i * _vocab, _vocab);
}
