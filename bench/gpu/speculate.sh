#!/usr/bin/env bash
# Self-speculative decoding on the GPU: gpu-check (the engine contract includes the dense pass of several tokens,
# plan-state rollback and greedy speculative = dense greedy), then `bench --device cuda --speculate K` per draft
# method (dense, the method alone and speculative in one run, with the mean accepted length) on the bundled model
# and on a random-weight Llama-3.1-8B-shaped checkpoint (bench/gpu/checkpoint8b.py).
#   bench/gpu/speculate.sh [quick]     (on a machine with an NVIDIA GPU; "quick": no 8B shape)
# Environment: OUT (where logs go), CKPT (reuse an 8B checkpoint), CK2 (reuse the 2-layer one), METHODS (default tidal,quest,lfps,prhs),
# K (default 4), CTX (bundled, default 8000), CTX8B (default 32768), BUDGETS (bundled, default "2% 5%"), SKIP (words: check).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-speculate}
mkdir -p "$out"
. "$here/program.sh"
quick=${1:-}
methods=${METHODS:-tidal quest lfps prhs}
k=${K:-4}
rc=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.txt" 2>&1
fixtures=("$root"/tests/SparseDecode.Tests/Fixtures/models/*)
# the engine contract also on a 2-layer model of the 8B shape's heads (tuned kernels, dense passes on the tensor cores)
ck2=${CK2:-/tmp/sparsedecode-ck2}
[[ " ${SKIP:-} " == *" check "* ]] || [ -f "$ck2/config.json" ] || (cd "$here" && python3 checkpoint8b.py "$ck2" 2) >"$out/checkpoint2.log" 2>&1
contract=(); [ -f "$ck2/config.json" ] && contract=(--contract-model "$ck2")
[[ " ${SKIP:-} " == *" check "* ]] || timeout 400 "$bin" gpu-check --model "$root/models/sparse-code-16m" "${fixtures[@]}" --methods oracle,streaming,quest,tidal,lfps,prhs,hshare \
  "${contract[@]}" >"$out/check.log" 2>&1 || rc=1
grep -E "promise|batched step|fork|truncated|dense pass|rolled|restored|speculative|FAIL|error" "$out/check.log" | tail -12
row() {  # label, budget, then bench's JSON on stdin
  python3 -c '
import json, sys
d = json.load(sys.stdin)
print("| %s | %d | %s | %s | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %s |" % (sys.argv[1], d["context"], d["method"], sys.argv[2], d["speculate"],
      d["dense_tokens_per_second"], d["sparse_tokens_per_second"], d["speculative_tokens_per_second"],
      d["speculative_tokens_per_second"] / d["dense_tokens_per_second"], d["mean_accepted"], "yes" if d["lossless"] else "no"))
' "$1" "$2"
}
table=$out/table.md
echo "| model | context | draft | budget | K | dense tok/s | draft alone tok/s | speculative tok/s | × dense | accepted per pass | = dense |" >"$table"
echo "|---|---:|---|---|---|---:|---:|---:|---:|---:|---|" >>"$table"
for b in ${BUDGETS:-2% 5%}; do
  for m in $methods; do
    timeout 200 "$bin" bench --device cuda --context "${CTX:-8000}" --steps 128 --method "$m" --budget "$b" --speculate "$k" --json \
      >"$out/bundled-$m-$b.json" 2>>"$out/bench.log"; [ -s "$out/bundled-$m-$b.json" ] && row bundled "$b" <"$out/bundled-$m-$b.json" >>"$table" || { rc=1; echo "bundled $m $b failed" >>"$table"; }
  done
done
if [ "$quick" != quick ]; then
  ck=${CKPT:-/tmp/sparsedecode-8b}
  [ -f "$ck/config.json" ] || (cd "$here" && python3 checkpoint8b.py "$ck") >"$out/checkpoint.log" 2>&1
  for m in $methods; do
    timeout 300 "$bin" bench --device cuda --model "$ck" --context "${CTX8B:-32768}" --steps 32 --method "$m" --budget 2048 --speculate "$k" --json \
      >"$out/8b-$m.json" 2>>"$out/bench.log"; [ -s "$out/8b-$m.json" ] && row 8B 2048 <"$out/8b-$m.json" >>"$table" || { rc=1; echo "8B $m failed" >>"$table"; }
  done
fi
tail -5 "$out/bench.log"
cat "$table"
tar -czf "$out/../speculate-logs.tgz" -C "$out" . 2>/dev/null
exit "$rc"
