"""Hugging Face transformers' decode step for the shape `sparsedecode gpu-step` times: a random-weight
LlamaForCausalLM (Llama-3.1-8B shape by default) in bf16 with SDPA attention, its KV cache (DynamicCache) filled with
random bf16 keys and values up to the context, then single-token forward passes (eager, as `generate` runs them),
each timed with CUDA events after warm-up; median reported. The cache is cropped back to the context after each
step, so every step attends the same number of keys."""
import argparse, json, statistics
import torch
from torch_shape import add_shape_options, random_llama

p = argparse.ArgumentParser()
p.add_argument("--contexts", default="8192,32768,131072")
add_shape_options(p)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--json", default=None)
a = p.parse_args()

import transformers
from transformers import DynamicCache

model = random_llama(a)
rows = []
for n in [int(x) for x in a.contexts.split(",") if x]:
    try:
        cache = DynamicCache()
        for l in range(a.layers):
            k = torch.empty(1, 8, n, 128, device="cuda").uniform_(-1, 1)
            v = torch.empty(1, 8, n, 128, device="cuda").uniform_(-1, 1)
            cache.update(k, v, l)
            del k, v
        tok = torch.tensor([[123]], device="cuda")
        times = []
        st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode():
            for i in range(a.steps + 3):
                pos = torch.tensor([n], device="cuda")
                st.record()
                out = model(input_ids=tok, past_key_values=cache, cache_position=pos, position_ids=pos.view(1, 1), use_cache=True)
                en.record(); en.synchronize()
                if i >= 3:
                    times.append(st.elapsed_time(en))
                cache.crop(n)
        ms = statistics.median(times)
        rows.append(dict(context=n, batch=1, operation="transformers decode step (eager, DynamicCache)", ms=ms))
        print(f"  {n:7d} b1 transformers decode step {ms:8.2f} ms (min {min(times):.2f}, max {max(times):.2f})", flush=True)
        del cache, out
        torch.cuda.empty_cache()
    except Exception as e:  # one context failing (memory) loses one row, not the run
        print(f"  {n:7d} b1 transformers decode step failed: {type(e).__name__}: {e}", flush=True)
        torch.cuda.empty_cache()
if a.json:
    with open(a.json, "w") as f:
        json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__, rows=rows), f, indent=1)
