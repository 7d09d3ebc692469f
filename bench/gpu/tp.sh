#!/usr/bin/env bash
# Tensor parallelism's single- and multi-GPU parts: gpu-nccl-check with 1 rank and with every count in RANKS the
# machine has GPUs for (one process per GPU; known all-reduce/all-gather sums, eager and from a CUDA graph, then
# all-reduce timings of the Llama-3.1-8B/70B hidden sizes in bf16 at batch 1 and 8, and the logits' all-gather),
# and --tensor-parallel's split check on the bundled model. NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
#   bench/gpu/tp.sh          Environment: OUT (logs, default out/gpu-tp), RANKS (default "1 2 4 8"), REPS (default 200)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-tp}
mkdir -p "$out"
. "$here/program.sh"
export NCCL_NVLS_ENABLE=0
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.txt" 2>&1
nvidia-smi topo -m >"$out/topology.txt" 2>&1
echo "GPUs: $gpus; NCCL libraries present:"
ls /usr/local/lib/python3*/dist-packages/nvidia/nccl/lib/libnccl.so* /usr/local/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so* \
  /usr/lib/python3*/dist-packages/nvidia/nccl/lib/libnccl.so* 2>/dev/null | head -3
rc=0
for n in ${RANKS:-1 2 4 8}; do
  if [ "$n" -gt "$gpus" ]; then echo "N=$n: skipped (this machine has $gpus GPU(s))"; continue; fi
  start=$(date +%s)
  timeout 300 "$bin" gpu-nccl-check --tensor-parallel "$n" --reps "${REPS:-200}" >"$out/nccl-n$n.log" 2>&1
  code=$?
  [ "$code" -eq 0 ] || rc=1
  echo "N=$n: exit $code, $(( $(date +%s) - start )) s"; cat "$out/nccl-n$n.log"
done
# the split check (N = 2 divides the bundled model's 2 KV heads; 4 does not) and the one-GPU engine under N = 1
for n in 1 2 4; do
  echo "generate --tensor-parallel $n:"
  timeout 120 "$bin" generate --device cuda --tensor-parallel "$n" --prompt "def fibonacci(n):" --max-tokens 16 2>&1 | tail -3
done
exit $rc
