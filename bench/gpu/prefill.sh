#!/usr/bin/env bash
# GPU prefill: GPU log-probabilities against the CPU engine (gpu-check, on the bundled model and the fixtures),
# then the prefill of the Llama-3.1-8B shape (random weights) through the session's prefill (gpu-prefill): both
# precisions at 8K and 32K, bf16 at 128K; and transformers' prefill of the same shape in the same run.
#   bench/gpu/prefill.sh                   (on a machine with an NVIDIA GPU)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${root:-$(cd "$here/../.." && pwd)}
out=${OUT:-$root/out/gpu-prefill}
mkdir -p "$out"
. "$here/program.sh"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$out/nvidia-smi.txt" 2>&1
rc=0
fixtures=("$root"/tests/SparseDecode.Tests/Fixtures/models/*)
"$bin" gpu-check --model "$root/models/sparse-code-16m" "${fixtures[@]}" 2>&1 | tee "$out/check-split.log" || rc=1
"$bin" gpu-prefill --contexts 8192,32768 --precision both 2>&1 | tee "$out/prefill8b.log" || rc=1
"$bin" gpu-prefill --contexts 131072 --precision bf16 --check-tokens 0 2>&1 | tee "$out/prefill8b-128k.log" || rc=1
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 "$here/torch_prefill.py" --contexts 8192,32768,131072 --json "$out/torch_prefill8b.json" 2>&1 | tee "$out/torch_prefill8b.log"
fi
exit "$rc"
