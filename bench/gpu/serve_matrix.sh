#!/usr/bin/env bash
# The serving benchmark of many long contexts in one command: bench/gpu/serve.sh (the server itself, distinct prompts,
# greedy, streamed, 256 tokens each) over prompts of about 8K, 32K and (LONG=1) 128K tokens, on the random-weight
# Llama-3.1-8B shape of bench/gpu/checkpoint8b.py (made once) and, at 8K, the bundled model; every method at a budget
# of 2,048 keys (the bundled model: 2%). Each run's table (tokens/s, TTFT, gaps) and the sequences and KV cache held
# go to OUT/<model>-<prompt>/. Then (bench/gpu/serve_probe.sh) prompts of 32K tokens one at a time, alone and beside
# 32 clients streaming from 8K prompts, at prefill budgets 8192 / 2048 / 512 and paced: their time to first token
# and the streams' inter-token latency meanwhile (OUT/8b-probe/). The tables are printed together at the end.
#   bash bench/gpu/serve_matrix.sh
# Environment: OUT, CKPT (the 8B checkpoint; made when missing), METHODS (default "dense tidal quest lfps prhs"),
# CLIENTS8K (default "1 8 32 64"), CLIENTS32K (default "1 8 32"), LONG=1 (also 4 clients of 128K), SKIP (words:
# bundled, 8b, 8k, 32k, probe: the runs of that model, prompt length or the probes), SERVE_ARGS (more serve options; default --gpu-prefill bf16).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-serve-matrix}
mkdir -p "$out"
ck=${CKPT:-/tmp/sparsedecode-8b}
methods=${METHODS:-dense tidal quest lfps prhs}
skip=" ${SKIP:-} "
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.txt" 2>&1
[[ "$skip" == *" 8b "* ]] || [ -f "$ck/config.json" ] || (cd "$here" && python3 checkpoint8b.py "$ck") >"$out/checkpoint.log" 2>&1
# prompt lines of serve_client.py per length, with the bundled tokenizer: about 7,900, 32,300 and 129,800 tokens,
# so that prompt + 256 tokens fill whole 8K, 32K and 128K contexts
run() {  # name, model, context, lines, clients, budget
  [[ "$skip" == *" ${1%%-*} "* || "$skip" == *" ${1#*-} "* ]] && return
  mkdir -p "$out/$1"
  OUT="$out/$1" MODEL="$2" CONTEXT="$3" LINES="$4" CLIENTS="$5" BUDGET="$6" TOKENS=256 PER=1 METHODS="$methods" \
    SERVE_ARGS="${SERVE_ARGS:---gpu-prefill bf16}" bash "$here/serve.sh" >"$out/$1/run.log" 2>&1
}
run bundled-8k "$root/models/sparse-code-16m" 8192 560 "${CLIENTS8K:-1 8 32 64}" 2%
run 8b-8k "$ck" 8192 560 "${CLIENTS8K:-1 8 32 64}" 2048
run 8b-32k "$ck" 32768 2150 "${CLIENTS32K:-1 8 32}" 2048
[ "${LONG:-0}" = 1 ] && run 8b-128k "$ck" 131072 8500 4 2048
if [[ "$skip" != *" probe "* && "$skip" != *" 8b "* ]]; then
  mkdir -p "$out/8b-probe"
  OUT="$out/8b-probe" MODEL="$ck" SERVE_ARGS="${SERVE_ARGS:---gpu-prefill bf16}" bash "$here/serve_probe.sh" >"$out/8b-probe/run.log" 2>&1
fi
for d in "$out"/*/; do
  [ -f "$d/serve.md" ] || [ -f "$d/probe.md" ] || continue
  echo; echo "## $(basename "$d")"
  grep -hE "KV cache" "$d"/serve*.log | head -1
  cat "$d/most.txt" "$d/serve.md" "$d/probe.md" 2>/dev/null
done | tee "$out/summary.md"
