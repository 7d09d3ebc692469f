#!/usr/bin/env bash
# eval and serve on the GPU with a random-weight Llama-3.1-8B-shaped checkpoint (bench/gpu/checkpoint8b.py):
# what the commands cost on an 8B model (the answers are noise). Environment: OUT (logs), CKPT (reuse a checkpoint).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-8b}
mkdir -p "$out"
. "$here/program.sh"
ck=${CKPT:-/tmp/sparsedecode-8b}
start=$(date +%s)
[ -f "$ck/config.json" ] || (cd "$here" && python3 checkpoint8b.py "$ck") >"$out/checkpoint.log" 2>&1
echo "checkpoint: $(( $(date +%s) - start )) s"; tail -2 "$out/checkpoint.log"
start=$(date +%s)
timeout 150 "$bin" eval --device cuda --model "$ck" --methods dense,tidal,lfps,quest,prhs --budgets 2048 --contexts 8192 \
  --tasks passkey,ppl --samples 2 --no-speed-sweep --no-heatmap --fidelity-steps 4 --out "$out/eval8b" >"$out/eval8b.log" 2>&1
echo "eval on the 8B shape: exit $?, $(( $(date +%s) - start )) s"; grep -E "│ (dense|tidal|lfps|quest|prhs) |cells" "$out/eval8b.log" | tail -8
"$bin" serve --device cuda --model "$ck" --port 8093 --max-batch 8 --context 4096 >"$out/serve8b.log" 2>&1 &
pid=$!
for i in $(seq 1 90); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8093/health', timeout=2)" 2>/dev/null && break; sleep 1; done
echo "server up after ${i} s: $(head -1 "$out/serve8b.log")"
echo "| method | clients | requests | wall s | generated tokens/s | mean TTFT s | p50 | p99 | gap p50 ms | gap p99 ms |"; echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in 1 8; do timeout 60 python3 "$here/serve_client.py" http://127.0.0.1:8093 $c 2 64; done
kill $pid; wait $pid 2>/dev/null
