#!/usr/bin/env bash
# The batched decode step on the GPU, every method: gpu-check (the kernels, GPU against the CPU engine per method,
# and the engine contract with a mixed batch whose sequences join and leave), then `bench --device cuda --batch N`
# (N sequences of one method decoding together through the engine's batched step, dense's figure from the same run)
# on the bundled model and on a random-weight Llama-3.1-8B-shaped checkpoint (bench/gpu/checkpoint8b.py).
#   bench/gpu/batch.sh [quick]     (on a machine with an NVIDIA GPU; "quick": no 8B shape)
# Environment: OUT (where logs go), CKPT (reuse an 8B checkpoint), CK2 (reuse the 2-layer one), METHODS (default tidal,quest,lfps,prhs),
# BATCHES (default "1 8 32"), CTX8B (default 32768), BATCHES8B (default "1 8"), SKIP (words: check).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-batch}
mkdir -p "$out"
. "$here/program.sh"
quick=${1:-}
methods=${METHODS:-tidal quest lfps prhs}
rc=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.txt" 2>&1
fixtures=("$root"/tests/SparseDecode.Tests/Fixtures/models/*)
# the engine contract also on a 2-layer model of the 8B shape's heads (tuned kernels, dense passes on the tensor cores)
ck2=${CK2:-/tmp/sparsedecode-ck2}
[[ " ${SKIP:-} " == *" check "* ]] || [ -f "$ck2/config.json" ] || (cd "$here" && python3 checkpoint8b.py "$ck2" 2) >"$out/checkpoint2.log" 2>&1
contract=(); [ -f "$ck2/config.json" ] && contract=(--contract-model "$ck2")
[[ " ${SKIP:-} " == *" check "* ]] || timeout 400 "$bin" gpu-check --model "$root/models/sparse-code-16m" "${fixtures[@]}" --methods oracle,streaming,quest,tidal,lfps,prhs,hshare \
  "${contract[@]}" >"$out/check.log" 2>&1 || rc=1
grep -E "budget=|FAIL|promise|batched step|fork|truncated|error" "$out/check.log" | tail -20
row() {  # label, then bench's JSON on stdin: one line per run
  python3 -c '
import json, sys
d = json.load(sys.stdin)
for r in d["runs"]:
    print("| %s | %d | %d | %s | %.0f | %.2f ± %.2f |" % (sys.argv[1], d["batch"], d["context"], r["method"],
          r["decode_tokens_per_second"], r["decode_ms_per_step"], r["decode_ms_per_step_sd"]))
' "$1"
}
table=$out/table.md
echo "| model | batch | context | method | tokens/s | ms/step |" >"$table"
echo "|---|---:|---:|---|---:|---:|" >>"$table"
for b in ${BATCHES:-1 8 32}; do
  for m in $methods; do
    timeout 120 "$bin" bench --device cuda --context 8000 --steps 64 --batch "$b" --method "$m" --budget 2% --json \
      >"$out/bundled-$m-$b.json" 2>>"$out/bench.log" && row bundled <"$out/bundled-$m-$b.json" >>"$table" || { rc=1; echo "bundled $m batch $b failed" >>"$table"; }
  done
done
if [ "$quick" != quick ]; then
  ck=${CKPT:-/tmp/sparsedecode-8b}
  start=$(date +%s)
  [ -f "$ck/config.json" ] || (cd "$here" && python3 checkpoint8b.py "$ck") >"$out/checkpoint.log" 2>&1
  echo "checkpoint: $(( $(date +%s) - start )) s"
  for b in ${BATCHES8B:-1 8}; do
    for m in $methods; do
      timeout 240 "$bin" bench --device cuda --model "$ck" --context "${CTX8B:-32768}" --steps 32 --batch "$b" --method "$m" --budget 2048 --json \
        >"$out/8b-$m-$b.json" 2>>"$out/bench.log" && row 8B <"$out/8b-$m-$b.json" >>"$table" || { rc=1; echo "8B $m batch $b failed" >>"$table"; }
    done
  done
fi
tail -5 "$out/bench.log"
cat "$table"
tar -czf "$out/../batch-logs.tgz" -C "$out" . 2>/dev/null
exit "$rc"
