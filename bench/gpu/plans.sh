#!/usr/bin/env bash
# The sparse methods as users run them on the GPU: each method's selection plan inside the captured step graph.
# The kernels against float64 (gpu-bench --check-only), gpu-check (GPU against the CPU engine per method:
# log-probabilities and index-set overlap), gpu-step (whole steps of the Llama-3.1-8B shape per method beside their
# floors, random weights), bench --device cuda on the bundled model per method, transformers' decode step in the same
# run, each method's steady-state launches under Nsight Compute, and compute-sanitizer racecheck over the selection
# kernels.
#   bench/gpu/plans.sh [quick]     (on a machine with an NVIDIA GPU; "quick": 32K only, no transformers, no sanitizer)
# Environment: OUT (where logs go), METHODS (gpu-step's list), SKIP (words: torch ncu race).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-plans}
mkdir -p "$out"
. "$here/program.sh"
quick=${1:-}
skip=" ${SKIP:-} "
rc=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv >"$out/nvidia-smi.txt" 2>&1
"$bin" gpu-bench --check-only >"$out/kernels.log" 2>&1 || rc=1
echo "kernel checks against float64: $(grep -c '| pass' "$out/kernels.log") pass, $(grep -c '| FAIL' "$out/kernels.log") fail"
fixtures=("$root"/tests/SparseDecode.Tests/Fixtures/models/*)
"$bin" gpu-check --model "$root/models/sparse-code-16m" "${fixtures[@]}" --methods oracle,streaming,quest,tidal,lfps,prhs,hshare \
  >"$out/check.log" 2>&1 || rc=1
grep -E "budget=|FAIL" "$out/check.log"
if [ "$quick" = quick ]; then ctx=32768; batched=""; else ctx=32768,131072; batched=32768x8; fi
"$bin" gpu-step --contexts "$ctx" --batched "$batched" --json "$out/step8b.json" \
  --methods "${METHODS:-dense,tidal,tidal:granularity=kv,lfps,lfps:granularity=kv,quest,quest:granularity=kv,prhs,hshare,oracle,streaming}" \
  >"$out/step8b.log" 2>&1 || rc=1
grep -E "^\|" "$out/step8b.log" | grep -vE "sweep|tile|r1u8|r2u8|r4u4|tensor-core products"
for m in dense streaming oracle quest tidal lfps prhs hshare; do
  budget=(); [ "$m" = dense ] || budget=(--budget 2%)
  "$bin" bench --device cuda --context 8000 --steps 64 --method $m "${budget[@]}" >>"$out/bench-bundled.log" 2>&1 || rc=1
done
grep -E "method|decode " "$out/bench-bundled.log" | paste - - | sed 's/│//g; s/  */ /g'
if [ "$quick" != quick ] && [[ "$skip" != *" torch "* ]] && python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 "$here/torch_step.py" --contexts 32768,131072 --json "$out/torch_step8b.json" >"$out/torch_step8b.log" 2>&1
  tail -3 "$out/torch_step8b.log"
fi
if [[ "$skip" != *" ncu "* ]]; then
  (OUT=$out/ncu METHODS=lfps SKIP_LAUNCHES=1600 bash "$here/ncu.sh"; OUT=$out/ncu METHODS=quest SKIP_LAUNCHES=300 COUNT=100 bash "$here/ncu.sh"
   OUT=$out/ncu METHODS=prhs SKIP_LAUNCHES=1600 COUNT=200 bash "$here/ncu.sh") 2>&1 | grep -v "^==PROF\|^==WARN"
fi
if [ "$quick" != quick ] && [[ "$skip" != *" race "* ]]; then
  OUT=$out/race SKIP="check eval load step" RACE_SECONDS=${RACE_SECONDS:-170} bash "$here/engine.sh" | tail -1
fi
exit "$rc"
