"""Streams completions from a running `sparsedecode serve` with N concurrent clients (greedy, ignore_eos, fixed
max_tokens) and prints generated tokens/s and the mean time to first token. With ignore_eos every request
generates exactly max_tokens tokens, which is what is counted: a stream's events carry text pieces, and a random
model's tokens are often incomplete UTF-8 that the server holds back, so events undercount tokens.
   python3 bench/gpu/serve_client.py URL CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS"""
import json
import sys
import threading
import time
import urllib.request

url, clients, per, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
prompt = "def process(items):\n" + "".join(f"    value_{i} = items[{i}] * {i % 7}\n" for i in range(60))
ttft, tokens, lock = [], [0], threading.Lock()


def one():
    body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "ignore_eos": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    t0, first = time.time(), None
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            first = first or time.time()
    with lock:
        ttft.append((first or time.time()) - t0)
        tokens[0] += max_tokens


def client():
    for _ in range(per):
        one()


start = time.time()
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.time() - start
print(f"| {clients} | {clients * per} | {wall:.1f} | {tokens[0] / wall:.1f} | {sum(ttft) / len(ttft):.3f} |", flush=True)
