using SparseDecode.Cuda;
using SparseDecode.Model;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Diagnostics;

/// <summary>The matrix-vector kernels of model_step.cu against a float64 host reference on fresh random bf16
/// weights and f32 activations: every kernel (each one-row variant, the CUDA-core kernels for 1/2/3/4/8 rows, and the
/// cuBLAS products of 3 bf16 parts that steps of 2 rows or more use, at 2/5/33/67 rows, and the bf16 products of
/// `--gpu-decode bf16` at 1/2/5/33/67 rows, held against the activations rounded to bf16), with a bias and without,
/// accumulating, at sizes whose rows do not fill a block. Outputs are poisoned first.</summary>
internal static class ModelKernelCheck
{
    /// <summary>‖got − ref‖ / ‖ref‖ allowed: f32 accumulation over bf16 weights (and, through cuBLAS, activations
    /// split into three bf16 parts) lands far below it.</summary>
    public const double Tolerance = 1e-4;

    public static List<GpuSelfCheck.Result> Run(ModelKernels mk, int seed)
    {
        var results = new List<GpuSelfCheck.Result>();
        var dev = mk.Device;
        var rng = new Random(seed);
        using var s = new CudaStream(dev);
        // every kernel choice, each its own ModelKernels (the choice is fixed at construction): the other one-row
        // kernels, then the CUDA-core kernels of 1 to 8 rows; the cuBLAS products beside them
        var variants = new List<(ModelKernels Kernels, int[] Rows)>();
        WideProduct? wide = null, bf16 = null;
        ModelKernels? bf16Kernels = null;
        try
        {
            foreach (var one in ModelKernels.OneRowVariants.Skip(1))
                variants.Add((new ModelKernels(dev, GemvOptions.CudaCoresOnly with { OneRowKernel = one }), [1]));
            variants.Add((new ModelKernels(dev, GemvOptions.CudaCoresOnly), [1, 2, 3, 4, 8]));
            wide = new WideProduct(mk, WideRows.Max(), 4096, 1000);
            bf16Kernels = new ModelKernels(dev, GemvOptions.Bf16);
            bf16 = new WideProduct(bf16Kernels, WideRows.Max(), 4096, 1000);
            foreach (var (n, k) in new[] { (200, 384), (1000, 4096), (320, 160) }) CheckShape(dev, variants, wide, bf16, results, rng, s, n, k);
        }
        finally
        {
            foreach (var v in variants) v.Kernels.Dispose();
            wide?.Dispose();
            bf16?.Dispose();
            bf16Kernels?.Dispose();
        }
        return results;
    }

    /// <summary>Row counts of the cuBLAS products checked: the fewest a step sends there, a few, and wide steps.</summary>
    private static readonly int[] WideRows = [2, 5, 33, 67];

    private static void CheckShape(CudaDevice dev, List<(ModelKernels Kernels, int[] Rows)> variants,
        WideProduct wide, WideProduct bf16, List<GpuSelfCheck.Result> results, Random rng, CudaStream s, int n, int k)
    {
        var w = new ushort[n * k];
        var wf = new double[n * k];
        for (int i = 0; i < w.Length; i++)
        {
            w[i] = ElementConvert.SingleToBf16((float)(rng.NextDouble() * 2 - 1));
            wf[i] = BitConverter.Int32BitsToSingle(w[i] << 16);
        }
        int most = WideRows.Max();
        var x = Enumerable.Range(0, most * k).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
        var bias = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
        var y0 = Enumerable.Range(0, most * n).Select(_ => (float)rng.NextDouble()).ToArray();
        using var dw = dev.Upload<ushort>(w);
        using var dx = dev.Upload<float>(x);
        using var db = dev.Upload<float>(bias);
        using var dy = dev.Allocate(most * n * 4L);
        // the bf16 products' own operands: each activation rounded to bf16 (as the device rounds, to nearest even)
        var xBf16 = x.Select(v => BitConverter.Int32BitsToSingle(ElementConvert.SingleToBf16(v) << 16)).ToArray();
        GpuSelfCheck.Result Check(ModelKernels? mk, WideProduct? product, int rows, bool accumulate, bool withBias = true)
        {
            if (accumulate) dy.Upload<float>(y0);
            else dy.Fill32(0xFFFFFFFF, most * n, s);
            if (product is not null) product.Multiply(dw.Pointer, n, k, dx, k, rows, withBias ? db : null, dy, n, accumulate, s);
            else mk!.Gemv(dw.Pointer, n, k, dx, k, rows, db, dy, n, accumulate, s);
            s.Synchronize();
            var got = dy.Download<float>(rows * n);
            var want = new double[rows * n];
            var xs = product == bf16 ? xBf16 : x;
            for (int b = 0; b < rows; b++)
                for (int r = 0; r < n; r++)
                {
                    double d = (withBias ? bias[r] : 0) + (accumulate ? y0[b * n + r] : 0);
                    for (int j = 0; j < k; j++) d += wf[r * k + j] * xs[b * k + j];
                    want[b * n + r] = d;
                }
            string what = product == bf16 ? "cuBLAS, activations rounded to bf16" : product is not null ? "cuBLAS, 3 bf16 parts" : mk!.GemvPlan(rows).Kernel;
            return new($"{what}: {rows} rows × [{n}][{k}]{(withBias ? "" : ", no bias")}{(accumulate ? " accumulating" : "")}",
                GpuReference.RelativeError(got, want), Tolerance, "");
        }
        foreach (var (mk, rowCounts) in variants)
        {
            foreach (int rows in rowCounts)
                foreach (bool accumulate in new[] { false, true }) results.Add(Check(mk, null, rows, accumulate));
        }
        foreach (int rows in WideRows)
            foreach (bool accumulate in new[] { false, true }) results.Add(Check(null, wide, rows, accumulate));
        foreach (int rows in WideRows.Prepend(1))
            foreach (bool accumulate in new[] { false, true })
                foreach (bool withBias in new[] { true, false }) results.Add(Check(null, bf16, rows, accumulate, withBias));
    }
}
