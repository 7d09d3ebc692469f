"""Hugging Face transformers' prefill for the shape `sparsedecode gpu-prefill` times: a random-weight
LlamaForCausalLM (Llama-3.1-8B shape by default) in bf16 with SDPA attention, one forward pass over a random prompt
that fills its KV cache (DynamicCache) and computes the last token's logits only, timed with CUDA events after a
warm-up pass; median of --reps. A context that runs out of memory is reported with its FLOP floor instead."""
import argparse, json, statistics
import torch
from torch_shape import add_shape_options, random_llama

p = argparse.ArgumentParser()
p.add_argument("--contexts", default="8192,32768,131072")
add_shape_options(p)
p.add_argument("--reps", type=int, default=3)
p.add_argument("--long-reps", type=int, default=1, help="timed passes from 65536 tokens on")
p.add_argument("--peak-tflops", type=float, default=989.0)
p.add_argument("--json", default=None)
a = p.parse_args()

import transformers
from transformers import DynamicCache

model = random_llama(a)
hd = a.hidden // a.heads
matrix = a.layers * (a.hidden * (a.hidden + 2 * 8 * hd) + a.hidden * a.hidden + 3 * a.hidden * a.intermediate)


def forward(ids):
    cache = DynamicCache()
    try:
        return model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    except TypeError:  # older transformers
        return model(input_ids=ids, past_key_values=cache, use_cache=True, num_logits_to_keep=1)


rows = []
with torch.inference_mode():
    forward(torch.randint(0, 128256, (1, 1024), device="cuda"))
    for n in [int(x) for x in a.contexts.split(",") if x]:
        flops = 2.0 * matrix * n + 2.0 * hd * n * (n + 1.0) * a.heads * a.layers
        floor = flops / (a.peak_tflops * 1e12)
        try:
            ids = torch.randint(0, 128256, (1, n), device="cuda")
            times = []
            st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            reps = a.long_reps if n >= 65536 else a.reps
            for i in range(reps + 1):
                st.record()
                out = forward(ids)
                en.record(); en.synchronize()
                if i > 0:
                    times.append(st.elapsed_time(en) / 1e3)
                del out
            sec = statistics.median(times)
            rows.append(dict(context=n, seconds=sec, tokens_per_s=n / sec, tflops=flops / sec / 1e12, floor_s=floor))
            print(f"| {n} | transformers sdpa bf16 | {sec:.3f} | {n / sec:.0f} | {flops / sec / 1e12:.1f} | {floor:.3f} | {sec / floor:.2f} |", flush=True)
        except torch.cuda.OutOfMemoryError as e:
            rows.append(dict(context=n, seconds=None, error="out of memory", floor_s=floor))
            print(f"| {n} | transformers sdpa bf16 | out of memory | | | {floor:.3f} | |", flush=True)
        torch.cuda.empty_cache()
if a.json:
    with open(a.json, "w") as f:
        json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__, rows=rows), f, indent=1)
