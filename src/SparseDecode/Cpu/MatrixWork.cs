using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>The matrix-matrix product of prefill, Y[t, r] = X[t]·W[r] (+ bias[r]), as a cache-blocked,
/// register-tiled GEMM. One work item is a strip of <see cref="Strip"/> output features (rows of W). For each
/// block of <see cref="DepthBlock"/> input columns the strip's weights are widened to f32 once and packed
/// depth-major ([k][16], 16 KB: it stays in L1), then every tile of <see cref="TileTokens"/> tokens runs the
/// micro-kernel over it (<see cref="RegisterTile.Multiply6x16"/>). The weights are read from memory once per prefill
/// chunk; X is read once per strip, from cache.
/// Edges: a last token tile shorter than six is shifted back to end at the last token (it recomputes a few
/// tokens into a scratch tile, of which only the new rows are kept); a last strip narrower than 16 is shifted
/// back the same way and accumulated in a scratch strip. Callers pad fewer than six tokens to a tile and send
/// fewer than sixteen rows to the matrix-vector product.</summary>
internal sealed unsafe class MatrixWork : ParallelWork
{
    public const int Strip = 16, TileTokens = 6, DepthBlock = 256;

    private DType _type;
    private byte* _w;
    private float* _x, _y;
    private int _cols, _rows, _tokens;
    private float[]? _bias;
    private float[][] _scratch = [];

    public void Run(WorkerPool pool, in TensorView w, float* x, float* y, int tokens, float[]? bias)
    {
        if (tokens < TileTokens || w.Rows < Strip) throw new ArgumentException($"The blocked product needs at least {TileTokens} tokens and {Strip} rows; {w.Name} got {tokens} and {w.Rows}.");
        (_type, _cols, _rows, _tokens, _bias) = (w.Type, w.Cols, w.Rows, tokens, bias);
        _w = w.Data; _x = x; _y = y;
        int need = Scratch(tokens);
        if (_scratch.Length < pool.Threads) Array.Resize(ref _scratch, pool.Threads);
        for (int i = 0; i < _scratch.Length; i++)
            if (_scratch[i] is null || _scratch[i].Length < need) _scratch[i] = new float[need];
        try
        {
            pool.Run(this, (_rows + Strip - 1) / Strip);
        }
        finally
        {
            _w = null; _x = null; _y = null; _bias = null;
        }
    }

    // per worker: packed panel, one row of converted weights, the strip's bias, a token tile, an edge strip
    private static int Scratch(int tokens) => DepthBlock * Strip + DepthBlock + Strip + TileTokens * Strip + tokens * Strip;

    public override void Execute(int item, int worker)
    {
        int cols = _cols, rows = _rows, tokens = _tokens;
        // a narrow last strip is shifted back to end at the last row; the rows it shares with the strip before
        // it are computed twice, and only its own are written out
        int r0 = Math.Min(item * Strip, rows - Strip), keepFrom = item * Strip - r0;
        bool edgeStrip = keepFrom > 0;
        long rowBytes = (long)cols * _type.SizeInBytes();
        fixed (float* scratch = _scratch[worker])
        {
            float* panel = scratch, row = panel + DepthBlock * Strip, bias = row + DepthBlock, tile = bias + Strip, edge = tile + TileTokens * Strip;
            for (int j = 0; j < Strip; j++) bias[j] = _bias is null ? 0f : _bias[r0 + j];
            // the strip's output: Y itself, or the edge scratch (16 wide) for a shifted strip
            float* c = edgeStrip ? edge : _y + r0;
            int ldc = edgeStrip ? Strip : rows;
            int lastTile = tokens - TileTokens, shiftedFrom = tokens / TileTokens * TileTokens;
            for (int k0 = 0; k0 < cols; k0 += DepthBlock)
            {
                int kc = Math.Min(DepthBlock, cols - k0);
                for (int j = 0; j < Strip; j++)
                {
                    ElementConvert.ToSingle(_type, _w + (r0 + j) * rowBytes + (long)k0 * _type.SizeInBytes(), new Span<float>(row, kc));
                    for (int k = 0; k < kc; k++) panel[k * Strip + j] = row[k];
                }
                float* init = k0 == 0 ? bias : null;
                int t = 0;
                for (; t + TileTokens <= tokens; t += TileTokens)
                    RegisterTile.Multiply6x16(_x + (long)t * cols + k0, cols, panel, Strip, kc, c + (long)t * ldc, ldc, init);
                if (t < tokens)
                    RegisterTile.Multiply6x16(_x + (long)lastTile * cols + k0, cols, panel, Strip, kc, tile, Strip, init);
            }
            if (shiftedFrom < tokens)
                for (int t = shiftedFrom; t < tokens; t++)
                    new ReadOnlySpan<float>(tile + (t - lastTile) * Strip, Strip).CopyTo(new Span<float>(c + (long)t * ldc, Strip));
            if (edgeStrip)
                for (int t = 0; t < tokens; t++)
                    new ReadOnlySpan<float>(edge + t * Strip + keepFrom, Strip - keepFrom)
                        .CopyTo(new Span<float>(_y + (long)t * rows + r0 + keepFrom, Strip - keepFrom));
        }
    }
}
