#!/usr/bin/env bash
# Reproduce the bundled model and the test fixtures in one command on a machine with one NVIDIA GPU
# (PyTorch, transformers and tokenizers installed; nothing is downloaded). Finishes within ten minutes:
# the training takes whatever time is left before the deadline, minus a margin for evaluation and export.
#   bash tools/reference-model/run_all.sh OUTDIR [TOTAL_SECONDS]
set -euo pipefail
out=${1:?usage: run_all.sh OUTDIR [TOTAL_SECONDS]}
total=${2:-570}
start=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, tokenizers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)"

python3 "$here/prepare_data.py" "$work/data" --max-mb "${MAX_MB:-200}"
# Fixtures run on the CPU while the model trains on the GPU.
python3 "$here/../fixtures/make_fixtures.py" "$work/fixtures" "$work/data/tokenizer.json" "$work/data/heldout.txt" \
  > "$work/fixtures.log" 2>&1 &
fixtures=$!

left=$(( total - ($(date +%s) - start) - 110 ))
echo "training for ${left}s"
python3 "$here/train.py" "$work/data" "$work/model" --seconds "$left"
gzip -9 -c "$work/data/heldout.txt" > "$work/model/heldout.txt.gz"

wait $fixtures || { cat "$work/fixtures.log"; exit 1; }
cat "$work/fixtures.log"
tar -C "$work" -czf "$out/fixtures.tar.gz" fixtures
tar -C "$work" -cf - model | split -b 15M - "$out/model.tar.part-"
ls -la "$out"
echo "done in $(( $(date +%s) - start ))s"
