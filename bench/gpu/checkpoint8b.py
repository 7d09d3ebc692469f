"""Writes a random-weight Llama-3.1-8B-shaped checkpoint (bf16 safetensors, the bundled model's tokenizer and
held-out text beside it) for timing eval and serve on the GPU: its answers are noise, its costs are an 8B model's.
   python3 bench/gpu/checkpoint8b.py OUT_DIR [LAYERS]
LAYERS (default 32): fewer layers of the same shape, e.g. 2 for a small model whose heads go through the tuned kernels
(`gpu-check --contract-model`)."""
import shutil
import sys
from pathlib import Path

import torch_shape


class Shape:
    layers, hidden, heads, intermediate = int(sys.argv[2]) if len(sys.argv) > 2 else 32, 4096, 32, 14336


out = Path(sys.argv[1])
model = torch_shape.random_llama(Shape())
model.save_pretrained(out, safe_serialization=True)
bundled = Path(__file__).resolve().parents[2] / "models" / "sparse-code-16m"
for name in ["tokenizer.json", "tokenizer_config.json", "heldout.txt.gz"]:
    if (bundled / name).exists():
        shutil.copy(bundled / name, out / name)
print(f"wrote {out}", flush=True)
