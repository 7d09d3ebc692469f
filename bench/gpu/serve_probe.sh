#!/usr/bin/env bash
# A long prompt's time to first token under load, and the running streams' inter-token latency meanwhile, for each
# --prefill-budget and with --prefill-pacing on (bench/gpu/serve_probe.py): one server per setting, BACKGROUND
# clients streaming, PROBES long prompts one at a time, unloaded then loaded.
#   MODEL=DIR bash bench/gpu/serve_probe.sh
# Environment: OUT (logs), DEVICE (default cuda), MODEL (default the bundled model), CONTEXT (default 32768),
# BUDGETS (--prefill-budget values, or "paced" for --prefill-pacing on; default "8192 2048 512 paced"), BACKGROUND
# (default 32), BG_LINES (default 560: about 7,900 tokens of the bundled tokenizer), BG_TOKENS (default 2048),
# PROBE_LINES (default 2150: about 32,000 tokens), PROBES (default 4), QUIET_SECONDS (the background alone before the
# probes, default 3), METHOD and BUDGET (the requests' `sparse` method; default dense), SERVE_ARGS.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-serve-probe}
mkdir -p "$out"
. "$here/program.sh"
model=${MODEL:-$root/models/sparse-code-16m}
background=${BACKGROUND:-32}
table=$out/probe.md
echo "| prefill budget | method | background clients | probes | probe TTFT s unloaded (median / largest) | loaded (median / largest) | largest loaded ÷ median unloaded | background inter-token p50 ms, alone | p50 ms, probes running | p99 ms, probes running | gaps counted, probes running | step's prompt tokens, median while probes run |" >"$table"
echo "|---:|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|" >>"$table"
args=(); [ -n "${METHOD:-}" ] && [ "${METHOD:-}" != dense ] && args=("$METHOD" "${BUDGET:-2%}")
for b in ${BUDGETS:-8192 2048 512 paced}; do
  step=(--prefill-budget "$b"); [ "$b" = paced ] && step=(--prefill-pacing on)
  "$bin" serve --device "${DEVICE:-cuda}" --model "$model" --port 8095 --max-batch $((background + 1)) --max-per-client 0 \
    --max-queue 256 --context "${CONTEXT:-32768}" "${step[@]}" --drain-timeout 1 --quiet ${SERVE_ARGS:-} >"$out/serve-$b.log" 2>&1 &
  pid=$!
  for i in $(seq 1 180); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8095/health', timeout=2)" 2>/dev/null && break; sleep 1; done
  row=$(timeout 900 python3 "$here/serve_probe.py" http://127.0.0.1:8095 "$background" "${BG_LINES:-560}" "${BG_TOKENS:-2048}" \
    "${PROBE_LINES:-2150}" "${PROBES:-4}" "${args[@]}" 2>>"$out/client.log") || row="| ${METHOD:-dense} | failed |"
  echo "| $b $row" >>"$table"
  kill $pid; wait $pid 2>/dev/null
done
cat "$table"
