#!/usr/bin/env bash
# GPU benchmark: checks every CUDA kernel against the float64 reference, times them per layer at 8K/32K/128K beside
# the bandwidth floor, times PyTorch's equivalents in the same run, prints one table; then the whole decode step:
# GPU log-probabilities against the CPU engine (gpu-check), whole steps of the Llama-3.1-8B shape and of the 70B
# layer shape (16 layers) per method beside their floors (gpu-step), and transformers' decode step for both shapes.
#   bench/gpu/run.sh [gpu-bench options]          (on a machine with an NVIDIA GPU)
# The program is a self-contained single-file publish (no .NET needed where it runs): taken from
# $SPARSEDECODE_BIN, else publish/gpu/sparsedecode(.gz), else built here with dotnet.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-bench}
mkdir -p "$out"
. "$here/program.sh"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv >"$out/nvidia-smi.txt" 2>&1
"$bin" gpu-bench --json "$out/ours.json" "$@" 2>&1 | tee "$out/ours.log"
rc=${PIPESTATUS[0]}
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 "$here/torch_bench.py" --json "$out/torch.json" 2>&1 | tee "$out/torch.log"
fi
[ -f "$out/ours.json" ] && python3 "$here/report.py" "$out/ours.json" "$out/torch.json" | tee "$out/table.md"
fixtures=("$root"/tests/SparseDecode.Tests/Fixtures/models/*)
"$bin" gpu-check --model "$root/models/sparse-code-16m" "${fixtures[@]}" 2>&1 | tee "$out/check.log" || rc=1
"$bin" gpu-step --json "$out/step8b.json" 2>&1 | tee "$out/step8b.log" || rc=1
"$bin" gpu-step --shape llama-3.1-70b-16l --contexts 32768,131072 --json "$out/step70b.json" 2>&1 | tee "$out/step70b.log" || rc=1
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 "$here/torch_step.py" --json "$out/torch_step8b.json" 2>&1 | tee "$out/torch_step8b.log"
  PYTHONUNBUFFERED=1 python3 "$here/torch_step.py" --layers 16 --hidden 8192 --heads 64 --intermediate 28672 \
    --contexts 32768,131072 --json "$out/torch_step70b.json" 2>&1 | tee "$out/torch_step70b.log"
fi
exit "$rc"
