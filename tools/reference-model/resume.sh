#!/usr/bin/env bash
# Stages 2 to 4: continue training an exported model (same tokenizer, same corpus and held-out split) within
# ten minutes. Writes the new export, packed in ≤ 15 MB parts, to OUTDIR.
#   bash tools/reference-model/resume.sh OUTDIR FROM_MODEL_DIR [TOTAL_SECONDS]
# Environment: LR (1e-3), P_TASK (0.5), MIX (stage2; stage3/stage4 for the later stages), SEED (1234; another seed
# draws other batches than the stage before); for the context extension SEQ and BATCH (8192, 16: rows per step),
# ROPE_THETA (the checkpoint's) and EVAL_LENGTHS (2048,4096,8192).
set -euo pipefail
out=${1:?usage: resume.sh OUTDIR FROM_MODEL_DIR [TOTAL_SECONDS]}
from=${2:?usage: resume.sh OUTDIR FROM_MODEL_DIR [TOTAL_SECONDS]}
total=${3:-570}
start=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 "$here/prepare_data.py" "$work/data" --max-mb "${MAX_MB:-200}" --tokenizer "$from/tokenizer.json"
left=$(( total - ($(date +%s) - start) - 100 ))
echo "training for ${left}s"
python3 "$here/train.py" "$work/data" "$work/model" --seconds "$left" --init "$from" --lr "${LR:-1e-3}" --p-task "${P_TASK:-0.5}" \
  --mix "${MIX:-stage2}" --seed "${SEED:-1234}" --seq "${SEQ:-8192}" --batch "${BATCH:-16}" \
  ${ROPE_THETA:+--rope-theta "$ROPE_THETA"} --eval-lengths "${EVAL_LENGTHS:-2048,4096,8192}"
gzip -9 -c "$work/data/heldout.txt" > "$work/model/heldout.txt.gz"
tar -C "$work" -cf - model | split -b 15M - "$out/model.tar.part-"
ls -la "$out"
echo "done in $(( $(date +%s) - start ))s"
