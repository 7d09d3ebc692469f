#!/usr/bin/env bash
# The sparse methods as users run them on the GPU: each method's selection plan inside the captured step graph.
# gpu-check (GPU against the CPU engine per method: log-probabilities and index-set overlap), gpu-step (whole
# steps of the Llama-3.1-8B shape per method beside their floors, random weights), bench --device cuda on the
# bundled model per method, and transformers' decode step in the same run.
#   bench/gpu/plans.sh [quick]     (on a machine with an NVIDIA GPU; "quick": 8K/32K only, no transformers)
# Environment: OUT (where logs go), METHODS (gpu-step's list), SANITIZE=0 (skip compute-sanitizer).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-plans}
mkdir -p "$out"
. "$here/program.sh"
quick=${1:-}
rc=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv >"$out/nvidia-smi.txt" 2>&1
fixtures=("$root"/tests/SparseDecode.Tests/Fixtures/models/*)
"$bin" gpu-check --model "$root/models/sparse-code-16m" "${fixtures[@]}" --methods oracle,streaming,quest,tidal,lfps,prhs,hshare \
  2>&1 | tee "$out/check.log" || rc=1
if [ "$quick" = quick ]; then ctx=8192,32768; else ctx=8192,32768,131072; fi
"$bin" gpu-step --contexts "$ctx" --batched 32768x8 --json "$out/step8b.json" \
  --methods "${METHODS:-dense,tidal,tidal:granularity=kv,lfps,lfps:granularity=kv,quest,quest:granularity=kv,oracle,streaming}" \
  2>&1 | tee "$out/step8b.log" || rc=1
for m in dense streaming oracle quest tidal lfps prhs hshare; do
  "$bin" bench --device cuda --context 8000 --steps 64 --method $m --budget 2% 2>&1 | tee -a "$out/bench-bundled.log" || rc=1
done
if [ "$quick" != quick ] && python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 "$here/torch_step.py" --contexts 32768,131072 --json "$out/torch_step8b.json" 2>&1 | tee "$out/torch_step8b.log"
fi
# compute-sanitizer over the plans on the bundled model (SANITIZE=0 skips it; racecheck takes minutes)
if [ "$quick" != quick ] && [ "${SANITIZE:-1}" != 0 ] && { command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; }; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for tool in memcheck racecheck; do
    timeout 150 "$cs" --tool $tool --print-limit 20 "$bin" gpu-check --model "$root/models/sparse-code-16m" \
      --methods oracle,streaming,quest,tidal,lfps > "$out/sanitizer-$tool.log" 2>&1
    echo "compute-sanitizer $tool: exit $? — $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-$tool.log" | tail -1)"
  done
fi
exit "$rc"
