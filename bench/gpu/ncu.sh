#!/usr/bin/env bash
# Where a method's decode step spends its time, kernel by kernel, in the steady state (past the first decode
# steps, where LFPS refreshes every head): Nsight Compute times each selection and attention launch of the
# captured step graph one at a time (cold caches, so each figure is an upper bound of its share of a replay),
# and summarises them per kernel and launch shape. Optionally a full profile (stall reasons, memory) of one kernel.
#   bench/gpu/ncu.sh          Environment: OUT (logs), METHODS (default "lfps quest"), CONTEXT (default 32768),
#                             SKIP_LAUNCHES (matching launches skipped first, default 1600), COUNT (default 320),
#                             FULL (a kernel name to profile with --set full, 2 launches; empty: none)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/out/gpu-ncu}
mkdir -p "$out"
. "$here/program.sh"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
regex='attn_sparse|topk|sel_|lfps_|prhs_|page_|score_|plan_'
for m in ${METHODS:-lfps quest}; do
  name=${m//[:;=]/_}
  "$ncu" --clock-control none --kernel-name regex:"$regex" --launch-skip "${SKIP_LAUNCHES:-1600}" \
    --launch-count "${COUNT:-320}" --metrics gpu__time_duration.sum,launch__grid_size --csv --page raw \
    "$bin" gpu-step --contexts "${CONTEXT:-32768}" --batched "" --reps 8 --methods "$m" >"$out/ncu-$name.csv" 2>"$out/ncu-$name.err"
  echo "== $m at ${CONTEXT:-32768}: µs per launch, steady state (bench/gpu/ncu_summary.py)"
  python3 "$here/ncu_summary.py" "$out/ncu-$name.csv"
done
if [ -n "${FULL:-}" ]; then
  "$ncu" --clock-control none --kernel-name "$FULL" --launch-skip 40 --launch-count 2 --set full --print-details all \
    "$bin" gpu-step --contexts "${CONTEXT:-32768}" --batched "" --reps 4 --methods "${FULL_METHOD:-quest}" >"$out/ncu-full-$FULL.txt" 2>&1
  grep -E "Duration|Warp Cycles Per Issued|Stall|Achieved Occupancy|Registers Per|Theoretical Occupancy|Memory Throughput|L2 Hit|Issued Ipc|Waves Per SM|Block Limit|Dynamic Shared|Static Shared|est. speedup|OPT" \
    "$out/ncu-full-$FULL.txt" | head -80
fi
