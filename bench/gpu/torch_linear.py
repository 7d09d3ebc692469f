"""The weight-reading part of a decode step through PyTorch's F.linear (cuBLAS), for comparison with the own
matrix-vector kernels of `sparsedecode gpu-step` ("no attention (weights only)"): the Llama-3.1-8B shape's products
per step (fused q|k|v 6144×4096, o 4096×4096, fused gate|up 28672×4096, down 4096×14336 in each of 32 layers, head
128256×4096), bf16 weights and activations, for 1 and 8 rows; captured into one CUDA graph, median of 20 replays."""
import argparse, json, statistics
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=32)
p.add_argument("--hidden", type=int, default=4096)
p.add_argument("--qkv", type=int, default=6144)
p.add_argument("--intermediate", type=int, default=14336)
p.add_argument("--vocab", type=int, default=128256)
p.add_argument("--json", default=None)
a = p.parse_args()
dev = "cuda"
torch.manual_seed(0)
H, I = a.hidden, a.intermediate
layers = [(torch.empty(a.qkv, H, dtype=torch.bfloat16, device=dev).uniform_(-0.02, 0.02),
           torch.empty(H, H, dtype=torch.bfloat16, device=dev).uniform_(-0.02, 0.02),
           torch.empty(2 * I, H, dtype=torch.bfloat16, device=dev).uniform_(-0.02, 0.02),
           torch.empty(H, I, dtype=torch.bfloat16, device=dev).uniform_(-0.02, 0.02)) for _ in range(a.layers)]
head = torch.empty(a.vocab, H, dtype=torch.bfloat16, device=dev).uniform_(-0.02, 0.02)
weight_bytes = sum(w.numel() * 2 for l in layers for w in l) + head.numel() * 2
rows = []
for b in (1, 8):
    x = torch.empty(b, H, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
    h = torch.empty(b, I, dtype=torch.bfloat16, device=dev).uniform_(-1, 1)
    out = {}

    def step():
        for wqkv, wo, wgu, wd in layers:
            out["qkv"] = F.linear(x, wqkv)
            out["o"] = F.linear(x, wo)
            out["gu"] = F.linear(x, wgu)
            out["d"] = F.linear(h, wd)
        out["logits"] = F.linear(x, head)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    g.replay(); g.replay(); torch.cuda.synchronize()
    st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(20):
        st.record(); g.replay(); en.record(); en.synchronize()
        times.append(st.elapsed_time(en))
    ms = statistics.median(times)
    rows.append(dict(batch=b, ms=ms, weight_bytes=weight_bytes))
    print(f"  b{b} F.linear over the step's weights ({weight_bytes / 1e9:.2f} GB): {ms:.3f} ms "
          f"({weight_bytes / (ms * 1e-3) / 1e12:.2f} TB/s)", flush=True)
if a.json:
    with open(a.json, "w") as f:
        json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, rows=rows), f, indent=1)
