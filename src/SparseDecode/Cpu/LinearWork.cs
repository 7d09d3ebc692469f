using SparseDecode.Model;
using SparseDecode.Engine;
using SparseDecode.Selection;

namespace SparseDecode.Cpu;

/// <summary>Up to three matrix-vector products that share one input (q, k and v; or one linear with the residual
/// added in place), run as one parallel region over blocks of rows of all of them, for the `batch` rows of a
/// decode step at once (each weight row is read once for all of them: <see cref="MatVec.Rows"/>). Bound once and
/// reused: a call allocates nothing.</summary>
public sealed unsafe class LinearWork : ParallelWork
{
    public const int MaxProducts = 3;

    private struct Product
    {
        public TensorView W;
        public float** Y;
        public float[]? Bias;
        public bool Accumulate;
        public int FirstItem, RowsPerItem;
    }

    private readonly Product[] _products = new Product[MaxProducts];
    private readonly SplitInput _input = new();
    private int _count;

    /// <summary>Adds y[b] (=|+=) W x[b] (+ bias) for each row b to the next <see cref="Run"/>; the table y and the
    /// outputs it points to (Rows floats each) must stay pinned until it returns.</summary>
    public LinearWork Add(in TensorView w, float** y, float[]? bias = null, bool accumulate = false)
    {
        if (_count == MaxProducts) throw new InvalidOperationException($"A linear region holds at most {MaxProducts} products.");
        if (_count > 0 && w.Cols != _products[0].W.Cols) throw new ArgumentException($"{w.Name} does not take the same input as the products before it.");
        _products[_count++] = new Product { W = w, Y = y, Bias = bias, Accumulate = accumulate };
        return this;
    }

    /// <summary>Runs the added products on the `batch` inputs x[b] (pinned, Cols floats each) and forgets them.</summary>
    public void Run(WorkerPool pool, float** x, int batch)
    {
        try
        {
            _input.Make(x, batch, _products[0].W.Cols);
            int items = 0;
            for (int i = 0; i < _count; i++)
            {
                ref var p = ref _products[i];
                p.RowsPerItem = RowsPerItem(p.W.Rows, pool.Threads);
                p.FirstItem = items;
                items += (p.W.Rows + p.RowsPerItem - 1) / p.RowsPerItem;
            }
            pool.Run(this, items);
        }
        finally
        {
            Array.Clear(_products); // drop the bias arrays and pointers
            _count = 0;
        }
    }

    /// <summary>About four items per thread (so that uneven progress balances), in multiples of four rows and at
    /// least 16 rows, so that an item's work outweighs handing it out.</summary>
    public static int RowsPerItem(int rows, int threads)
    {
        int perItem = (rows + 4 * threads - 1) / (4 * threads);
        return Math.Max(16, (perItem + 3) & ~3);
    }

    public override void Execute(int item, int worker)
    {
        int i = 0;
        while (i + 1 < _count && item >= _products[i + 1].FirstItem) i++;
        ref var p = ref _products[i];
        int r0 = (item - p.FirstItem) * p.RowsPerItem, r1 = Math.Min(p.W.Rows, r0 + p.RowsPerItem);
        _input.Rows(p.W, r0, r1, p.Y, p.Bias, p.Accumulate);
    }
}
