#!/usr/bin/env bash
# One engine on the GPU, as users run it: gpu-check (kernels, every method against the CPU, the engine contract),
# eval --device cuda on the bundled model, the server under load (bench/load --device cuda), and whole steps of
# the Llama-3.1-8B shape for the methods named in STEP_METHODS.
#   bench/gpu/engine.sh      Environment: OUT (logs), SAMPLES (eval samples per cell, default 20), SEEDS (default "1 2"),
#                            BUDGETS (default 1%,2%,5%,10%), EVAL_CONTEXTS (default: the model's grid), FIDELITY (keys-read
#                            steps per cell, default 8), STEP_METHODS, STEP_CONTEXTS, SKIP (words: check eval load step race)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-engine}
mkdir -p "$out"
. "$here/program.sh"
loadbin=${SPARSEDECODE_LOADBENCH:-$root/publish/gpu/sparsedecode-loadbench}
if [ ! -x "$loadbin" ] && [ -f "$loadbin.gz" ]; then
  gunzip -c "$loadbin.gz" > /tmp/sparsedecode-gpu/sparsedecode-loadbench && chmod +x /tmp/sparsedecode-gpu/sparsedecode-loadbench
  loadbin=/tmp/sparsedecode-gpu/sparsedecode-loadbench
fi
skip=" ${SKIP:-} "
rc=0
model="$root/models/sparse-code-16m"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.txt" 2>&1
if [[ "$skip" != *" check "* ]]; then
  fixtures=("$root"/tests/SparseDecode.Tests/Fixtures/models/*)
  "$bin" gpu-check --model "$model" "${fixtures[@]}" --methods oracle,streaming,quest,tidal,lfps,prhs,hshare \
    >"$out/check.log" 2>&1 || rc=1
  grep -E "^\| |FAIL|error" "$out/check.log" | grep -vE "^\| (kernel|check|---)" | tail -40
fi
if [[ "$skip" != *" eval "* ]]; then
  for seed in ${SEEDS:-1 2}; do
    start=$(date +%s)
    "$bin" eval --device cuda --model "$model" --methods dense,oracle,streaming,quest,tidal,lfps,prhs,hshare \
      --budgets "${BUDGETS:-1%,2%,5%,10%}" --samples "${SAMPLES:-20}" --seed "$seed" --out "$out/eval-seed$seed" \
      ${EVAL_CONTEXTS:+--contexts "$EVAL_CONTEXTS"} --fidelity-steps "${FIDELITY:-8}" --no-heatmap \
      >"$out/eval-seed$seed.log" 2>&1 || rc=1
    echo "eval seed $seed: $(( $(date +%s) - start )) s"; tail -40 "$out/eval-seed$seed.log"
    tar czf "$out/eval-seed$seed.tgz" -C "$out" "eval-seed$seed" && rm -rf "$out/eval-seed$seed"
  done
fi
if [[ "$skip" != *" load "* ]] && [ -x "$loadbin" ]; then
  for m in dense tidal; do
    timeout 240 "$loadbin" --device cuda --model "$model" --clients 1,8,32 --requests 4 --max-tokens 64 --prompt-words 60 \
      --method $m --budget 2% >"$out/load-$m.log" 2>&1 || rc=1
    echo "load, $m:"; tail -8 "$out/load-$m.log"
  done
fi
if [[ "$skip" != *" step "* ]]; then
  "$bin" gpu-step --contexts "${STEP_CONTEXTS:-32768,131072}" --json "$out/step8b.json" \
    --methods "${STEP_METHODS:-dense,tidal,prhs,hshare}" >"$out/step8b.log" 2>&1 || rc=1
  grep -E "^\|" "$out/step8b.log" | tail -30
fi
# racecheck of every kernel a method's plan launches. Over gpu-step (random weights and cache, no prefill) rather
# than gpu-check: under racecheck, the prefill's cuBLAS GEMM stopped the run with an internal sanitizer error
# (run 17), before any selection kernel ran. Only the selection kernels are instrumented, which keeps it short.
if [[ "$skip" != *" race "* ]] && { command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; }; then
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  timeout "${RACE_SECONDS:-240}" "$cs" --tool racecheck --print-limit 20 \
    --kernel-regex kns="${RACE_KERNELS:-sel_|lfps_|prhs_|plan_|topk|page_|score_}" "$bin" gpu-step \
    --contexts 4096 --batched "" --reps 1 --budget 256 --methods oracle,streaming,quest,tidal,lfps,prhs,hshare \
    >"$out/racecheck.log" 2>&1
  echo "compute-sanitizer racecheck: exit $? — $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$out/racecheck.log" | tail -1)"
fi
exit "$rc"
