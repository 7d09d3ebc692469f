"""Time to first token of a long prompt with and without load, and what its prefill does to the streams already
decoding. Against a running `sparsedecode serve`:
  1. unloaded: PROBES requests of a long prompt (PROBE_LINES lines of code, distinct), one at a time, each asking for
     one token, timed to their response (the whole request: queue, prefill and the first token);
  2. loaded: BACKGROUND clients each stream requests of BG_LINES lines and BG_TOKENS tokens (greedy, ignore_eos) in a
     loop; once all of them are decoding, the same number of probes again, one at a time; then it exits, leaving the
     background's last requests to the server.
Prints one markdown row: the probes' TTFT unloaded and loaded (median and largest), their ratio, and the server's
inter-token latency of the background streams (from its /metrics histogram): p50 over QUIET_SECONDS (default 3) of
the background alone just before the probes, then p50 and p99 while the probes ran; and the median of the prompt
tokens a step could take while the probes ran (the server's prefill budget gauge, polled).
   python3 bench/gpu/serve_probe.py URL BACKGROUND BG_LINES BG_TOKENS PROBE_LINES PROBES [METHOD BUDGET]"""
import itertools
import json
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_metrics import count, ms_cells, quantile, snapshot  # noqa: E402

url = sys.argv[1]
background, bg_lines, bg_tokens, probe_lines, probes = (int(x) for x in sys.argv[2:7])
sparse = {"method": sys.argv[7], "budget": sys.argv[8]} if len(sys.argv) > 8 else None
numbers = itertools.count()
ITL = "sparsedecode_inter_token_latency_seconds"
QUIET_SECONDS = float(os.environ.get("QUIET_SECONDS", "3"))


def prompt(lines):
    n = next(numbers)
    return f"# request {n}\n" + "def process(items):\n" + "".join(f"    value_{i} = items[{i}] * {(i + n) % 7}\n" for i in range(lines))


streaming = threading.Semaphore(0)  # released once per background request, at its first streamed event


def post(lines, max_tokens, stream):
    body = {"model": "m", "prompt": prompt(lines), "max_tokens": max_tokens, "temperature": 0, "stream": stream, "ignore_eos": True}
    if sparse:
        body["sparse"] = sparse
    req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    t0 = time.time()
    first = stream
    with urllib.request.urlopen(req, timeout=1800) as r:
        for line in r:
            if first and line.startswith(b"data: "):
                streaming.release()
                first = False
    return time.time() - t0


def probe_all():
    return [post(probe_lines, 1, False) for _ in range(probes)]


post(probe_lines, 1, False)  # warm-up: the prefill and step graphs of this length
unloaded = probe_all()

stop = threading.Event()


def background_client():
    while not stop.is_set():
        post(bg_lines, bg_tokens, True)


threads = [threading.Thread(target=background_client, daemon=True) for _ in range(background)]
for t in threads:
    t.start()
for _ in range(background):  # every background stream past its prefill
    streaming.acquire(timeout=900)
time.sleep(1)
quiet = snapshot(url)
time.sleep(QUIET_SECONDS)  # the background alone: its steps without a prompt beside them
before = snapshot(url)
budgets, probing = [], threading.Event()


def watch_budget():  # the prompt tokens a step could take, while the probes run
    while not probing.is_set():
        text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        budgets.extend(float(line.split()[-1]) for line in text.splitlines() if line.startswith("sparsedecode_prefill_budget_tokens{"))
        time.sleep(0.2)


watcher = threading.Thread(target=watch_budget, daemon=True)
watcher.start()
loaded = probe_all()
probing.set()
after = snapshot(url)
stop.set()  # the background's requests in flight are left to the server (its caller stops it)

med = lambda xs: sorted(xs)[len(xs) // 2]
itl = [quantile(quiet, before, ITL, 0.5)] + [quantile(before, after, ITL, q) for q in (0.5, 0.99)]
itl_text = ms_cells(itl)
ratio = max(loaded) / med(unloaded)
method = sparse["method"] if sparse else "server default"
budget = "–" if not budgets else ("no limit" if med(budgets) == float("inf") else f"{med(budgets):.0f}")
print(f"| {method} | {background} | {probes} | {med(unloaded):.3f} / {max(unloaded):.3f} | {med(loaded):.3f} / {max(loaded):.3f} | "
      f"{ratio:.2f} | {itl_text} | {count(before, after, ITL):.0f} | {budget} |", flush=True)
