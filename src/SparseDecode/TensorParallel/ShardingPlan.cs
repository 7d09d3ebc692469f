using SparseDecode.Model;

namespace SparseDecode.TensorParallel;

/// <summary>A contiguous range of rows or columns of one matrix (or of heads, or of the vocabulary).</summary>
public readonly record struct Slice(int Offset, int Length)
{
    public int End => Offset + Length;
    public override string ToString() => $"[{Offset}, {End})";
}

/// <summary>What one rank holds of every decoder layer, and of the head, under Megatron-style tensor parallelism.
/// Matrices are [rows][cols] as in the checkpoint (rows = outputs). Column-parallel (a slice of the rows, no
/// communication): q, k, v, gate, up and the lm head. Row-parallel (a slice of the columns, a partial sum of the
/// whole output that the all-reduce completes): o and down. The embedding and the norms are replicated.</summary>
public sealed record RankShard
{
    public required int Rank { get; init; }
    /// <summary>Query heads of this rank: the groups of its KV heads, so no GQA group spans two ranks.</summary>
    public required Slice QueryHeads { get; init; }
    public required Slice KvHeads { get; init; }
    /// <summary>Rows of q_proj, k_proj, v_proj (and their biases).</summary>
    public required Slice QRows { get; init; }
    public required Slice KRows { get; init; }
    public required Slice VRows { get; init; }
    /// <summary>Columns of o_proj: the attention outputs of this rank's query heads (= <see cref="QRows"/>).</summary>
    public required Slice OColumns { get; init; }
    /// <summary>Rows of gate_proj and up_proj, and columns of down_proj: this rank's part of the MLP width.</summary>
    public required Slice Intermediate { get; init; }
    /// <summary>Rows of the lm head (a slice of the embedding's rows when tied) this rank scores.</summary>
    public required Slice Vocab { get; init; }
    /// <summary>The row-parallel biases (o, down) are added by rank 0 only, so the all-reduce adds them once.</summary>
    public bool AddsRowParallelBias => Rank == 0;
}

/// <summary>How a model splits over N ranks (one GPU each): KV heads divided evenly (each rank keeps the KV cache
/// and every sparse method's state of its own KV heads, so selection — per query head or per KV head — never
/// leaves the rank), query heads following their KV head, the MLP width divided evenly, the lm head split by
/// vocabulary and the logits all-gathered. Per layer the step needs two all-reduces of the hidden vector (after o,
/// after down) and, per step, one all-gather of the logits. <see cref="Create"/> refuses a split that would not
/// tile the model, in one sentence.</summary>
public sealed class ShardingPlan
{
    /// <summary>The matrix-vector kernels read rows of a multiple of 8 bf16 elements (16-byte loads): the
    /// row-parallel o and down slices must keep that.</summary>
    public const int ColumnTile = 8;
    public const int MaxRanks = 64;

    public ModelConfig Config { get; }
    public int Ranks { get; }
    public IReadOnlyList<RankShard> Shards { get; }
    /// <summary>Vocabulary rows per rank in the gathered logits: ⌈vocab / N⌉. Rank r's logits land at r × stride,
    /// so the first vocab entries of the gathered row are the logits in order; the last rank pads its tail.</summary>
    public int VocabStride { get; }

    private ShardingPlan(ModelConfig config, int ranks, RankShard[] shards, int vocabStride)
    {
        Config = config;
        Ranks = ranks;
        Shards = shards;
        VocabStride = vocabStride;
    }

    /// <summary>Null when the model splits over `ranks`, else the one-sentence reason it cannot.</summary>
    public static string? Validate(ModelConfig c, int ranks)
    {
        if (ranks < 1 || ranks > MaxRanks) return $"--tensor-parallel must be between 1 and {MaxRanks}, got {ranks}.";
        if (c.NumKvHeads % ranks != 0)
            return $"--tensor-parallel {ranks} does not divide the model's {c.NumKvHeads} KV heads (each rank keeps whole KV heads and their query groups); use one of {Divisors(c.NumKvHeads)}.";
        if (c.IntermediateSize % (ranks * ColumnTile) != 0)
            return $"--tensor-parallel {ranks} does not split the MLP width {c.IntermediateSize} into slices of a multiple of {ColumnTile} (the kernels' row tile).";
        if (c.HeadDim * c.NumHeads / ranks % ColumnTile != 0)
            return $"--tensor-parallel {ranks} leaves each rank an attention width of {c.HeadDim * c.NumHeads / ranks}, not a multiple of {ColumnTile} (the kernels' row tile).";
        if (c.VocabSize < ranks) return $"--tensor-parallel {ranks} exceeds the vocabulary of {c.VocabSize} tokens.";
        return null;
    }

    public static ShardingPlan Create(ModelConfig c, int ranks)
    {
        if (Validate(c, ranks) is string reason) throw new ArgumentException(reason);
        int kvPerRank = c.NumKvHeads / ranks, headsPerRank = kvPerRank * c.GroupSize, mlpPerRank = c.IntermediateSize / ranks;
        int vocabStride = (c.VocabSize + ranks - 1) / ranks;
        var shards = new RankShard[ranks];
        for (int r = 0; r < ranks; r++)
        {
            var q = new Slice(r * headsPerRank * c.HeadDim, headsPerRank * c.HeadDim);
            var kv = new Slice(r * kvPerRank * c.HeadDim, kvPerRank * c.HeadDim);
            int vocabStart = Math.Min(c.VocabSize, r * vocabStride);
            shards[r] = new RankShard
            {
                Rank = r,
                QueryHeads = new Slice(r * headsPerRank, headsPerRank),
                KvHeads = new Slice(r * kvPerRank, kvPerRank),
                QRows = q,
                KRows = kv,
                VRows = kv,
                OColumns = q,
                Intermediate = new Slice(r * mlpPerRank, mlpPerRank),
                Vocab = new Slice(vocabStart, Math.Min(c.VocabSize, vocabStart + vocabStride) - vocabStart),
            };
        }
        return new ShardingPlan(c, ranks, shards, vocabStride);
    }

    /// <summary>The bf16 bytes one rank reads from the weights per decode step: its slices of every layer's
    /// matrices and of the lm head (the embedding row and the norms are negligible) — the floor's numerator.</summary>
    public long WeightBytesPerStep(int rank)
    {
        var s = Shards[rank];
        long hidden = Config.HiddenSize;
        long perLayer = (s.QRows.Length + s.KRows.Length + s.VRows.Length) * hidden  // q|k|v rows
                        + hidden * s.OColumns.Length                                // o columns
                        + 2L * s.Intermediate.Length * hidden                        // gate|up rows
                        + hidden * s.Intermediate.Length;                           // down columns
        return 2 * (perLayer * Config.NumLayers + (long)s.Vocab.Length * hidden);
    }

    private static string Divisors(int n) => string.Join(", ", Enumerable.Range(1, n).Where(d => n % d == 0));
}
