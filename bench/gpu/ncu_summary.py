#!/usr/bin/env python3
"""Summarises an Nsight Compute raw CSV (ncu --csv --page raw, gpu__time_duration.sum): per kernel and grid,
launches, mean and total µs, in order of total; the program's own output before the table is skipped."""
import csv
import sys
from collections import OrderedDict


def main(path):
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        print(f"{path}: no profiled kernels (is the launch window past the program's end?)")
        return
    rows = list(csv.reader(l for l in lines[start:] if l.startswith('"')))
    header, units, data = rows[0], rows[1], rows[2:]
    col = {n: i for i, n in enumerate(header)}
    t, unit = col["gpu__time_duration.sum"], units[col["gpu__time_duration.sum"]]
    to_us = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(unit, 1.0)
    groups = OrderedDict()
    for r in data:
        name = r[col["Kernel Name"]].split("(")[0]
        key = (name, r[col["Grid Size"]] if "Grid Size" in col else r[col["launch__grid_size"]],
               r[col["Block Size"]] if "Block Size" in col else "")
        groups.setdefault(key, []).append(float(r[t].replace(",", "")) * to_us)
    total = sum(sum(v) for v in groups.values())
    print(f"{len(data)} launches, {total:.1f} µs in all")
    print(f"{'kernel':<28} {'grid':<16} {'block':<14} {'launches':>8} {'mean µs':>9} {'total µs':>10} {'share':>6}")
    for (name, grid, block), v in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        print(f"{name:<28} {grid:<16} {block:<14} {len(v):>8} {sum(v) / len(v):>9.2f} {sum(v):>10.1f} {sum(v) / total:>6.1%}")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)
