#!/usr/bin/env python3
"""Prints a markdown table of the criterion results under target/criterion: bench id, median
time (with criterion's 95% interval of the median) and throughput at the median, when the bench
declares one. Usage: python3 benches/report.py [target/criterion] [id-prefix ...]"""
import json
import pathlib
import sys


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}" if ns / scale < 100 else f"{ns / scale:.0f} {unit}"
    return f"{ns:.3g} ns"


def fmt_throughput(tp, ns):
    if not tp:
        return "–"
    (kind, n), = tp.items()
    per_s = n / (ns / 1e9)
    if kind == "Bytes":
        return f"{per_s / 2**20:,.0f} MiB/s" if per_s >= 2**20 else f"{per_s / 2**10:,.1f} KiB/s"
    if kind == "Elements":
        return f"{per_s / 1e6:,.2f} M elem/s" if per_s >= 1e6 else f"{per_s / 1e3:,.1f} K elem/s"
    return "–"


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    prefixes = sys.argv[2:]
    rows = []
    for bench in sorted(root.rglob("new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        bid = meta["full_id"]
        if prefixes and not any(bid.startswith(p) for p in prefixes):
            continue
        med = est["median"]
        ci = med["confidence_interval"]
        rows.append((bid, med["point_estimate"], ci["lower_bound"], ci["upper_bound"], meta.get("throughput")))
    print("| bench | median | 95% CI of median | throughput |")
    print("| --- | ---: | ---: | ---: |")
    for bid, m, lo, hi, tp in rows:
        print(f"| `{bid}` | {fmt_time(m)} | {fmt_time(lo)} – {fmt_time(hi)} | {fmt_throughput(tp, m)} |")


if __name__ == "__main__":
    main()
