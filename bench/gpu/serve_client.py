"""Streams completions from a running `sparsedecode serve` with N concurrent clients (greedy, ignore_eos, fixed
max_tokens) and prints one markdown row: generated tokens/s, time to first token (mean, p50, p99), the gap
between a stream's events after the first (p50, p99), and the server's own inter-token latency over the run (p50,
p99, from its /metrics histogram: every token counted, whatever the events carry). With ignore_eos every request generates exactly max_tokens
tokens, which is what is counted: a stream's events carry text pieces, and a random model's tokens are often
incomplete UTF-8 that the server holds back, so events undercount tokens (the gaps are then between pieces).
Each request's prompt is distinct (its number first), PROMPT_LINES lines of code long; with SHARED=1 in the
environment the number comes last instead, so every prompt begins with the same code (the server's prompt cache can
reuse it). METHOD and BUDGET go in the request's `sparse` field (the server's own method without them).
   python3 bench/gpu/serve_client.py URL CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS [PROMPT_LINES [METHOD BUDGET [SPECULATE]]]"""
import itertools
import json
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_metrics import ms_cells, quantile, snapshot  # noqa: E402

url, clients, per, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = int(sys.argv[5]) if len(sys.argv) > 5 else 60
sparse = {"method": sys.argv[6], "budget": sys.argv[7]} if len(sys.argv) > 7 else None
# an eighth argument: speculative decoding with that draft length (the method drafts, dense verifies)
if sparse and len(sys.argv) > 8:
    sparse["speculate"] = sys.argv[8] if sys.argv[8] == "auto" else int(sys.argv[8])
ttft, gaps, tokens, lock, numbers = [], [], [0], threading.Lock(), itertools.count()


def prompt(n):
    body = "def process(items):\n" + "".join(f"    value_{i} = items[{i}] * {i % 7}\n" for i in range(lines))
    return body + f"# request {n}\n" if os.environ.get("SHARED") == "1" else f"# request {n}\n" + body


def one():
    body = {"model": "m", "prompt": prompt(next(numbers)), "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True}
    if sparse:
        body["sparse"] = sparse
    req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    t0, times = time.time(), []
    with urllib.request.urlopen(req, timeout=1800) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            times.append(time.time())
    with lock:
        ttft.append((times[0] if times else time.time()) - t0)
        gaps.extend(b - a for a, b in zip(times, times[1:]))
        tokens[0] += max_tokens


def client():
    for _ in range(per):
        one()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


before = snapshot(url)
start = time.time()
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.time() - start
after = snapshot(url)
itl = [quantile(before, after, "sparsedecode_inter_token_latency_seconds", q) for q in (0.5, 0.99)]
itl_text = ms_cells(itl)
print(f"| {(sparse['method'] + (' speculate ' + str(sparse['speculate']) if 'speculate' in sparse else '')) if sparse else 'server default'} | {clients} | {clients * per} | {wall:.1f} | {tokens[0] / wall:.1f} | "
      f"{sum(ttft) / len(ttft):.3f} | {pct(ttft, 50):.3f} | {pct(ttft, 99):.3f} | {1e3 * pct(gaps, 50):.1f} | {1e3 * pct(gaps, 99):.1f} | {itl_text} |",
      flush=True)
