using SparseDecode.Cuda;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using static SparseDecode.Model.ElementConvert;

namespace SparseDecode.Diagnostics;

/// <summary>`gpu-nccl-check` on one rank: collectives over known buffers checked against their sums computed on the
/// host, and all-reduce timings at the hidden sizes tensor parallelism moves (two per layer and token). Every rank
/// runs the same sequence of collectives (NCCL matches them by order); each checks its own result.</summary>
internal static class NcclCheck
{
    public sealed record Check(string Name, double MaxError, bool Passed);

    /// <summary>Median microseconds of one collective replayed from a CUDA graph; bus bandwidth as nccl-tests
    /// defines it (2(N−1)/N × bytes / time for an all-reduce, (N−1)/N × gathered bytes / time for an all-gather).</summary>
    public sealed record Timing(string Name, long Bytes, double Microseconds, double Spread, double BusGBps);

    /// <summary>Elements of the checked buffers: not a multiple of a warp or of NCCL's chunks, to catch a lost tail.</summary>
    public const int CheckedCount = 4099;

    public static IReadOnlyList<Check> Verify(NcclCommunicator comm, CudaDevice device, CudaStream stream)
    {
        int n = comm.Ranks, rank = comm.Rank;
        var checks = new List<Check>();
        // f32: halves and small integers, so every partial sum is exact whatever order NCCL adds in
        float F32(int r, int i) => (r + 1) * (i % 13 - 6) + 0.5f * r;
        using (var send = device.Upload<float>(Values(CheckedCount, i => F32(rank, i))))
        using (var receive = device.Allocate(CheckedCount * 4L))
        {
            comm.AllReduceSum(send, receive, CheckedCount, NcclElement.Float32, stream);
            stream.Synchronize();
            checks.Add(Compare("all-reduce f32 (4099 elements)", receive.Download<float>(CheckedCount), i => Sum(n, r => F32(r, i))));
        }
        // bf16: small integers (exact in bf16 up to 256; the sums stay within ±80 for 8 ranks)
        float Bf(int r, int i) => i % 7 - 3 + r % 2;
        using (var send = device.Upload<ushort>(Values(CheckedCount, i => Bf(rank, i)).Select(SingleToBf16).ToArray()))
        {
            comm.AllReduceSum(send, send, CheckedCount, NcclElement.Bfloat16, stream);   // in place
            stream.Synchronize();
            var got = send.Download<ushort>(CheckedCount).Select(Bf16ToSingle).ToArray();
            checks.Add(Compare("all-reduce bf16 in place (4099 elements)", got, i => Sum(n, r => Bf(r, i))));
        }
        // captured into a CUDA graph and replayed twice in place: every rank ends with N × the sum
        using (var buffer = device.Upload<float>(Values(CheckedCount, i => F32(rank, i))))
        {
            using var graph = stream.Capture(() => comm.AllReduceSum(buffer, buffer, CheckedCount, NcclElement.Float32, stream));
            graph.Launch(stream);
            graph.Launch(stream);
            stream.Synchronize();
            checks.Add(Compare("all-reduce f32 in a CUDA graph, replayed twice", buffer.Download<float>(CheckedCount), i => n * Sum(n, r => F32(r, i))));
        }
        // all-gather, as the vocabulary slices of the logits are gathered
        const int slice = 257;
        using (var send = device.Upload<float>(Values(slice, i => rank * 1000 + i)))
        using (var receive = device.Allocate(slice * 4L * n))
        {
            comm.AllGather(send, receive, slice, NcclElement.Float32, stream);
            stream.Synchronize();
            checks.Add(Compare($"all-gather f32 ({n} × {slice} elements)", receive.Download<float>(slice * n), i => i / slice * 1000 + i % slice));
        }
        return checks;
    }

    /// <summary>One in-place bf16 all-reduce of rows × hidden elements per shape, then the f32 all-gather of the
    /// logits' vocabulary slices, each captured into a graph and replayed `reps` times.</summary>
    public static IReadOnlyList<Timing> Time(NcclCommunicator comm, CudaDevice device, CudaStream stream, int reps,
        IEnumerable<(string Shape, int Hidden)> shapes, int[] rows, int vocab)
    {
        int n = comm.Ranks;
        var timings = new List<Timing>();
        using var timer = new CudaTimer(device);
        foreach (var (shape, hidden) in shapes)
            foreach (int b in rows)
            {
                long count = (long)hidden * b;
                using var buffer = device.Allocate(count * 2);
                buffer.Fill32(0, count / 2, stream);
                using var graph = stream.Capture(() => comm.AllReduceSum(buffer, buffer, count, NcclElement.Bfloat16, stream));
                double us = timer.MedianReplay(graph, stream, reps, out double spread) * 1000;
                timings.Add(new Timing($"all-reduce bf16, {shape} hidden {hidden} × batch {b}", count * 2, us, spread, 2.0 * (n - 1) / n * count * 2 / (us * 1e3)));
            }
        int stride = (vocab + n - 1) / n;
        using (var send = device.Allocate(stride * 4L))
        using (var receive = device.Allocate(stride * 4L * n))
        {
            send.Fill32(0, stride, stream);
            using var graph = stream.Capture(() => comm.AllGather(send, receive, stride, NcclElement.Float32, stream));
            double us = timer.MedianReplay(graph, stream, reps, out double spread) * 1000;
            timings.Add(new Timing($"all-gather f32 logits, vocab {vocab} ({n} × {stride})", stride * 4L * n, us, spread, (n - 1.0) / n * stride * 4.0 * n / (us * 1e3)));
        }
        return timings;
    }

    private static float[] Values(int count, Func<int, float> value) => Enumerable.Range(0, count).Select(value).ToArray();

    private static double Sum(int ranks, Func<int, float> value) => Enumerable.Range(0, ranks).Sum(r => (double)value(r));

    private static Check Compare(string name, float[] got, Func<int, double> expected)
    {
        double worst = 0;
        for (int i = 0; i < got.Length; i++) worst = Math.Max(worst, Math.Abs(got[i] - expected(i)));
        // every value and sum above is exactly representable: anything but zero is a wrong sum
        return new Check(name, worst, worst == 0);
    }
}
