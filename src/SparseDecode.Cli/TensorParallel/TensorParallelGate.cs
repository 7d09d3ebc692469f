using SparseDecode.Model;
using SparseDecode.TensorParallel;

namespace SparseDecode.Cli.TensorParallel;

/// <summary>`--tensor-parallel N` on generate, bench, eval and serve: N = 1 is the one-GPU engine; for N > 1 the
/// model's split is validated first (so a model that cannot be split says why), then refused in one sentence until
/// the sharded decode step exists — the plan, NCCL and the launcher it will use are built and checked by
/// `gpu-nccl-check`.</summary>
internal static class TensorParallelGate
{
    public static void Check(int ranks, string modelDirectory, string device, string command)
    {
        if (ranks == 1) return;
        var config = ModelConfig.Load(modelDirectory);
        if (ShardingPlan.Validate(config, ranks) is string reason) throw new ArgumentException(reason);
        if (device != "cuda") throw new ArgumentException("--tensor-parallel shards the model over GPUs, so it needs --device cuda.");
        throw new ArgumentException($"{command} --tensor-parallel {ranks} is not available yet: the model splits over {ranks} GPUs and `sparsedecode gpu-nccl-check --tensor-parallel {ranks}` checks NCCL between them, but the sharded GPU decode step is not built.");
    }
}
