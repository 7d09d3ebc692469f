"""PyTorch's equivalents of `sparsedecode gpu-bench`, timed the same way in the same run: Llama-3.1-8B decode
heads (32 q / 8 kv / 128), bf16 KV, one query; inputs rotated among cache copies so L2 cannot hold them; each
operation captured OPS times into a CUDA graph (and, for SDPA, also run eagerly), median of REPS replays."""
import argparse, json, math, statistics
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--contexts", default="8192,32768,131072")
p.add_argument("--batched", default="32768x8")
p.add_argument("--budget", type=int, default=2048)
p.add_argument("--ops", type=int, default=24)
p.add_argument("--reps", type=int, default=15)
p.add_argument("--json", default=None)
a = p.parse_args()
dev = "cuda"
torch.manual_seed(0)
rows = []


def timed(fn, ops, graph=True):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for i in range(ops):
                fn(i)
        g.replay(); g.replay(); torch.cuda.synchronize()
        for _ in range(a.reps):
            st.record(); g.replay(); en.record(); en.synchronize()
            times.append(st.elapsed_time(en) / ops)
    else:
        for _ in range(a.reps):
            st.record()
            for i in range(ops):
                fn(i)
            en.record(); en.synchronize()
            times.append(st.elapsed_time(en) / ops)
    return statistics.median(times)


def add(n, b, op, ms, note=""):
    if callable(ms):
        try:
            ms = ms()
        except Exception as e:  # a capture or kernel failure loses one row, not the run
            print(f"  {n:7d} b{b} {op:46s} failed: {e}", flush=True)
            return
    rows.append(dict(context=n, batch=b, operation=op, ms=ms, note=note))
    print(f"  {n:7d} b{b} {op:46s} {ms*1e3:9.1f} us {note}", flush=True)


# device copy bandwidth, read + written
x = torch.empty(1 << 28, dtype=torch.float32, device=dev).uniform_()
y = torch.empty_like(x)
ms = timed(lambda i: y.copy_(x) if i % 2 == 0 else x.copy_(y), 4)
copy_bw = 2 * x.numel() * 4 / (ms * 1e-3)
print(f"torch device copy: {copy_bw/1e12:.3f} TB/s", flush=True)
del x, y

cases = [(int(n), 1) for n in a.contexts.split(",") if n] + \
        [tuple(int(v) for v in c.split("x")) for c in a.batched.split(",") if c]
K = a.budget
for n, b in cases:
    kv_bytes = b * 8 * n * 128 * 2 * 2
    sets = max(2, min(16, math.ceil((512 << 20) / kv_bytes)))
    ops = (a.ops + sets - 1) // sets * sets
    ks = [torch.empty(b, 8, n, 128, dtype=torch.bfloat16, device=dev).uniform_(-1, 1) for _ in range(sets)]
    vs = [torch.empty(b, 8, n, 128, dtype=torch.bfloat16, device=dev).uniform_(-1, 1) for _ in range(sets)]
    q = torch.empty(b, 32, 1, 128, dtype=torch.bfloat16, device=dev).uniform_(-2, 2)
    out = {}

    def sdpa(i):
        out["o"] = F.scaled_dot_product_attention(q, ks[i % sets], vs[i % sets], enable_gqa=True)

    add(n, b, "sdpa decode (graph)", lambda: timed(sdpa, ops))
    add(n, b, "sdpa decode (eager)", lambda: timed(sdpa, ops, graph=False))
    scores32 = torch.empty(b * 32, n, dtype=torch.float32, device=dev).uniform_(-3, 3)
    scores8 = torch.empty(b * 8, n, dtype=torch.float32, device=dev).uniform_(-3, 3)
    add(n, b, f"torch.topk {K} of [{b*32}][{n}] f32 (graph)", lambda: timed(lambda i: out.__setitem__("t", torch.topk(scores32, K, dim=-1, sorted=False)), ops))
    add(n, b, f"torch.topk {K} of [{b*8}][{n}] f32 (graph)", lambda: timed(lambda i: out.__setitem__("t", torch.topk(scores8, K, dim=-1, sorted=False)), ops))
    qg = q.view(b, 8, 4, 128).float()

    def select(i):
        s = torch.matmul(qg.to(torch.bfloat16), ks[i % sets].transpose(-1, -2)).float().amax(dim=2)  # [b,8,n]
        out["i"] = torch.topk(s, K, dim=-1, sorted=False).indices

    add(n, b, "scores (max over group) + topk (graph)", lambda: timed(select, ops))
    idx = torch.stack([torch.randperm(n, device=dev)[:K].sort().values for _ in range(b * 8)]).view(b, 8, K)

    def gather_sdpa(i):
        ix = idx.unsqueeze(-1).expand(b, 8, K, 128)
        kk = torch.gather(ks[i % sets], 2, ix)
        vv = torch.gather(vs[i % sets], 2, ix)
        out["o"] = F.scaled_dot_product_attention(q, kk, vv, enable_gqa=True)

    add(n, b, f"gather {K} + sdpa (graph)", lambda: timed(gather_sdpa, ops))
    del ks, vs
    torch.cuda.empty_cache()

if a.json:
    with open(a.json, "w") as f:
        json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, copy_bytes_per_second=copy_bw, rows=rows), f, indent=1)
