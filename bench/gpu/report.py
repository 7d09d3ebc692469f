"""Prints sparsedecode gpu-bench's table with PyTorch's time for the same operation beside it (same run)."""
import json, sys

ours = json.load(open(sys.argv[1]))
try:
    torch = json.load(open(sys.argv[2]))
except (OSError, IndexError, ValueError):
    torch = {"rows": []}
T = {(r["context"], r["batch"], r["operation"]): r["ms"] for r in torch["rows"]}


def first(n, b, prefix):
    return next((v for (c, bb, o), v in T.items() if c == n and bb == b and o.startswith(prefix)), None)


def match(r):
    n, b, op = r["context"], r["batch"], r["operation"]
    if op in ("dense attention", "dense attention, best variant") or op.startswith("= "):
        return first(n, b, "sdpa decode (graph)"), "SDPA (dense)"
    if op.startswith("exact top-") and "of [" in op and "," not in op:
        rows = op.split("[")[1].split("]")[0]
        k = op.split("exact top-")[1].split(" ")[0]
        return T.get((n, b, f"torch.topk {k} of [{rows}][{n}] f32 (graph)")), "torch.topk"
    if op == "tidal selection (scores + top-k), one layer":
        return first(n, b, "scores (max"), "matmul+amax+topk"
    if op.startswith("sparse attention") and op.endswith("per-KV-head lists"):
        return first(n, b, "gather"), "gather+SDPA"
    return None, ""


skip = (", chunk ", ", Split", ", Fused", ", MultiBlock", ", PerRow")
bw, rbw = ours.get("copy_bytes_per_second", 0), ours.get("read_bytes_per_second", 0)
print(f"GPU: {ours['gpu']}; device copy {bw/1e12:.2f} TB/s, read {rbw/1e12:.2f} TB/s (ours); copy {torch.get('copy_bytes_per_second', 0)/1e12:.2f} TB/s (torch {torch.get('torch', '-')})")
fails = [c for c in ours["checks"] if not c["passed"]]
print(f"kernel checks: {len(ours['checks']) - len(fails)} passed, {len(fails)} failed" + "".join(f"\n  FAIL {c['name']} ({c['error']})" for c in fails))
print("| context | batch | operation | ours µs | floor µs (copy) | × floor | × read floor | torch µs | torch op | torch ÷ ours | note |")
print("|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---|")
for r in ours["rows"]:
    if any(x in r["operation"] for x in skip):
        continue
    t, name = match(r)
    ratio = f"{t / r['ms']:.2f}" if t else ""
    ts = f"{t*1e3:.1f}" if t else ""
    rf = r.get("read_floor_ms") or 0
    print(f"| {r['context']} | {r['batch']} | {r['operation']} | {r['ms']*1e3:.1f} | {r['floor_ms']*1e3:.1f} | {r['ms']/r['floor_ms']:.2f} | {(r['ms']/rf if rf else 0):.2f} | {ts} | {name} | {ratio} | {r['note']} |")
print("\nvariants (ours, µs):")
for r in ours["rows"]:
    if any(x in r["operation"] for x in skip):
        print(f"  {r['context']:7d} b{r['batch']} {r['operation']:58s} {r['ms']*1e3:8.1f}  {r['note']}")
