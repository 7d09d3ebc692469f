#!/usr/bin/env bash
# Serving under load on the GPU (or, DEVICE=cpu, the CPU): `sparsedecode serve --device cuda` with every sequence of every method a row of one
# batched step, driven by bench/gpu/serve_client.py (distinct prompts, greedy, ignore_eos, streamed): for each
# method (the request's `sparse` field; dense without) and each client count, generated tokens/s, time to first
# token, the gap between streamed pieces, and the server's inter-token latency (its /metrics histogram). The bundled
# model by default; MODEL=DIR for another (e.g. the 8B shape of bench/gpu/checkpoint8b.py).
#   bench/gpu/serve.sh
# Environment: OUT (logs), DEVICE (default cuda; cpu runs the same on the CPU), MODEL, CONTEXT (default 4096), CLIENTS (default "1 8 32 64"), LINES (prompt lines,
# default 250: about 3,000 tokens of the bundled tokenizer), TOKENS (default 128), METHODS (default "dense tidal
# quest"; "tidal:4" speculates with tidal drafting 4 tokens), BUDGET (default 2%), PER (requests per client, default 2),
# SERVE_ARGS (more serve options).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-serve}
mkdir -p "$out"
. "$here/program.sh"
model=${MODEL:-$root/models/sparse-code-16m}
clients=${CLIENTS:-1 8 32 64}
most=$(echo $clients | tr ' ' '\n' | sort -n | tail -1)
"$bin" serve --device "${DEVICE:-cuda}" --model "$model" --port 8094 --max-batch "$most" --max-per-client 0 --max-queue 256 \
  --context "${CONTEXT:-4096}" --quiet ${SERVE_ARGS:-} >"$out/serve.log" 2>&1 &
pid=$!
for i in $(seq 1 120); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8094/health', timeout=2)" 2>/dev/null && break; sleep 1; done
echo "server up after ${i} s"
table=$out/serve.md
echo "| method | clients | requests | wall s | generated tokens/s | mean TTFT s | TTFT p50 | TTFT p99 | gap p50 ms | gap p99 ms | inter-token p50 ms | inter-token p99 ms |" >"$table"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" >>"$table"
for m in ${METHODS:-dense tidal quest}; do
  for c in $clients; do
    args=("${m%%:*}" "${BUDGET:-2%}"); [ "$m" = dense ] && args=(dense 100%)
    [[ "$m" == *:* ]] && args+=("${m##*:}")
    # the most sequences decoding at once and the most KV cache they held, sampled from /health and /metrics
    python3 -c '
import json, re, sys, time, urllib.request
most, held = 0, 0
while True:
    try:
        most = max(most, json.load(urllib.request.urlopen("http://127.0.0.1:8094/health", timeout=2))["active_sequences"])
        text = urllib.request.urlopen("http://127.0.0.1:8094/metrics", timeout=2).read().decode()
        m = re.search(r"^sparsedecode_kv_cache_bytes\{[^}]*\} (\S+)", text, re.M)
        held = max(held, float(m.group(1)) if m else 0)
        open(sys.argv[1], "w").write(f"{most} sequences decoding at once, {held / 1e6:.0f} MB of KV cache held")
    except Exception:
        pass
    time.sleep(0.25)
' "$out/most-$c.txt" &
    poll=$!
    timeout 300 python3 "$here/serve_client.py" http://127.0.0.1:8094 "$c" "${PER:-2}" "${TOKENS:-128}" "${LINES:-250}" "${args[@]}" >>"$table" 2>>"$out/client.log" \
      || echo "| $m | $c | failed |" >>"$table"
    kill $poll 2>/dev/null; wait $poll 2>/dev/null
    gpu=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader 2>/dev/null | head -1)
    echo "$m, $c clients: at most $(cat "$out/most-$c.txt" 2>/dev/null || echo '?')${gpu:+; GPU memory in use after: $gpu}" >>"$out/most.txt"
  done
done
curl -s http://127.0.0.1:8094/metrics >"$out/metrics.txt" 2>/dev/null
kill $pid; wait $pid 2>/dev/null
grep -E "KV cache|error" "$out/serve.log"
cat "$out/most.txt" 2>/dev/null
cat "$table"
