"""Turns run.sh's measurements into loadtest/results/baseline-*.{json,md}: per system, then tier1
against nginx and against the bounds of the performance issue that this run can check."""

import json
import platform
import subprocess
import sys

out, secs, conns, metrics_path, clk_tck, *lines = sys.argv[1:]
clk_tck = int(clk_tck)


def us(v):
    n = v.rstrip("mus")
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[v[len(n):]]


rows = {}
for line in lines:
    name, requests, rps, p50, p90, p99, ticks, mock_ticks, rss_idle, rss_load, non2xx = line.split()
    requests = int(requests)
    rows[name] = {
        "requests": requests, "rps": float(rps),
        "p50_us": us(p50), "p90_us": us(p90), "p99_us": us(p99),
        "cpu_s_per_10k": int(ticks) / clk_tck / requests * 10_000,
        "mock_cpu_share": int(mock_ticks) / clk_tck / float(secs),
        "rss_idle_mib": int(rss_idle) / 1024, "rss_load_mib": int(rss_load) / 1024,
        "non_2xx": int(non2xx),
    }
direct = rows["direct"]
for name in ("nginx", "tier1"):
    r = rows[name]
    for q in ("p50", "p90", "p99"):
        r[f"added_{q}_us"] = r[f"{q}_us"] - direct[f"{q}_us"]


def histogram_quantile(text, name, q):
    """The q-quantile of an unlabelled Prometheus histogram, interpolated within its bucket; in
    the first bucket, that bucket's upper bound (the histogram cannot say more)."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, prev_le, prev_n = q * buckets[-1][1], 0.0, 0.0
    for i, (le, n) in enumerate(buckets):
        if n >= rank:
            if le == float("inf") or i == 0:
                return le if i == 0 else prev_le
            return prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9)
        prev_le, prev_n = le, n
    return None


metrics = open(metrics_path).read()
overhead_p50 = histogram_quantile(metrics, "tier1_overhead_seconds", 0.5)
overhead_p99 = histogram_quantile(metrics, "tier1_overhead_seconds", 0.99)
t, n = rows["tier1"], rows["nginx"]
checks = [
    ("CPU per request ≤ 1.3× nginx", t["cpu_s_per_10k"] / n["cpu_s_per_10k"], 1.3, "le"),
    ("throughput at saturation ≥ 0.8× nginx", t["rps"] / n["rps"], 0.8, "ge"),
    ("tier1_overhead_seconds p50 < 20 µs", (overhead_p50 or 0) * 1e6, 20, "lt"),
    ("RSS idle ≤ 20 MiB", t["rss_idle_mib"], 20, "le"),
]
bounds = [
    {"bound": b, "measured": round(v, 3), "limit": lim,
     "met": v <= lim if op == "le" else v >= lim if op == "ge" else v < lim}
    for b, v, lim, op in checks
]


def version(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return (r.stdout or r.stderr).strip().splitlines()[0]


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
env = {
    "cpu": cpu, "cores": sum(1 for l in open("/proc/cpuinfo") if l.startswith("processor")),
    "kernel": platform.release(), "wrk": version(["wrk", "--version"]), "nginx": version(["nginx", "-v"]),
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "load": f"wrk -t1 -c{conns} -d{secs}s at saturation; nginx/tier1 on CPU 0, wrk + mock upstream on CPU 1",
}
report = {"environment": env, "results": rows, "tier1_overhead_seconds": {"p50": overhead_p50, "p99": overhead_p99},
          "bounds": bounds}
json.dump(report, open(out + ".json", "w"), indent=2)

md = [f"# tier1 beside nginx ({env['commit']})", "",
      f"{env['cpu']}, {env['cores']} cores, kernel {env['kernel']}; {env['wrk']}; {env['nginx']}",
      f"Load: {env['load']}", "",
      "| system | requests/s | p50 | p90 | p99 | added p50 | added p99 | CPU s / 10k req | RSS idle → load | mock CPU | non-2xx |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for name, r in rows.items():
    added = (f"{r['added_p50_us']:.0f} µs | {r['added_p99_us']:.0f} µs" if name != "direct" else "– | –")
    md.append(f"| {name} | {r['rps']:.0f} | {r['p50_us']:.0f} µs | {r['p90_us']:.0f} µs | {r['p99_us']:.0f} µs | {added} | "
              f"{r['cpu_s_per_10k']:.3f} | {r['rss_idle_mib']:.1f} → {r['rss_load_mib']:.1f} MiB | "
              f"{r['mock_cpu_share'] * 100:.0f}% | {r['non_2xx']} |")
first = histogram_quantile(metrics, "tier1_overhead_seconds", 0.0)


def quoted(v):
    v = v or 0
    return f"≤ {v * 1e6:.0f} µs (its first bucket)" if v == first else f"{v * 1e6:.1f} µs"


md += ["", f"tier1_overhead_seconds: p50 {quoted(overhead_p50)}, p99 {quoted(overhead_p99)} "
       "(from the histogram's buckets)", "", "| bound | measured | met |", "| --- | ---: | :---: |"]
for b in bounds:
    md.append(f"| {b['bound']} | {b['measured']} | {'yes' if b['met'] else 'NO'} |")
md += ["", "Not measured by this run: latency at fixed rates (wrk has no fixed-rate mode), p99.9, streams "
       "and 5,000 open streams, Redis and strict modes beside nginx (see loadtest/redis/)."]
open(out + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
