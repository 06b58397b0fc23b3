#!/usr/bin/env bash
# Redis off the hot path, measured: the same load through tier1 with no Redis, with Redis in
# async mode (the default), and with the limit in strict mode (one Redis call per request).
# tier1 is pinned to CPU 0; wrk and redis-server share CPU 1. Results go to
# loadtest/results/redis-<date>.{json,md}.
# Usage: loadtest/redis/run.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
for bin in wrk redis-server redis-cli taskset curl python3; do
  command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install wrk redis-server util-linux curl)"; exit 1; }
done
cargo build --release --quiet
bin=target/release/tier1
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rport=$(free_port)
taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done

# run NAME REDIS(yes|no) MODE(async|strict) -> "NAME p50 p99 rps non2xx"
run() {
  local name=$1 redis=$2 mode=$3 port pid
  port=$(free_port)
  {
    cat loadtest/redis/tier1.toml
    [ "$mode" = strict ] && echo 'mode = "strict"'
    [ "$redis" = yes ] && printf '\n[redis]\nurl = "redis://127.0.0.1:%s"\nsync_interval = "50ms"\n' "$rport"
  } > "$work/$name.toml"
  taskset -c 0 "$bin" --config "$work/$name.toml" --listen "127.0.0.1:$port" 2>"$work/$name.log" &
  pid=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
  local url="http://127.0.0.1:$port/v1/chat/completions"
  taskset -c 1 wrk -t1 -c8 -d2s -s loadtest/redis/post.lua "$url" >/dev/null
  taskset -c 1 wrk -t1 -c8 -d"${secs}s" --latency -s loadtest/redis/post.lua "$url" > "$work/$name.wrk"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local p50 p99 rps non2xx
  p50=$(awk '$1=="50%" {print $2}' "$work/$name.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/$name.wrk")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$name.wrk")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/$name.wrk")
  echo "$name ${p50} ${p99} ${rps} ${non2xx:-0}"
}

lines=("$(run none no async)" "$(run async yes async)" "$(run strict yes strict)")
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=loadtest/results/redis-$stamp
python3 - "$out" "$secs" "${lines[@]}" <<'PY'
import json, platform, subprocess, sys
out, secs, *lines = sys.argv[1:]
def us(v):
    n = v.rstrip("mus"); u = v[len(n):]
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[u]
rows = []
for l in lines:
    name, p50, p99, rps, non2xx = l.split()
    rows.append({"mode": name, "p50_us": us(p50), "p99_us": us(p99), "rps": float(rps), "non_2xx": int(non2xx)})
base = rows[0]["p50_us"]
for r in rows:
    r["p50_vs_no_redis"] = round(r["p50_us"] / base, 3)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
env = {
    "cpu": cpu, "cores": len([l for l in open("/proc/cpuinfo") if l.startswith("processor")]),
    "kernel": platform.release(),
    "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0] if True else "",
    "redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip(),
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "load": f"wrk -t1 -c8 -d{secs}s, tier1 on CPU 0, wrk and redis-server on CPU 1, in-process mock provider",
}
json.dump({"environment": env, "results": rows}, open(out + ".json", "w"), indent=2)
md = [f"# Redis off the hot path ({env['commit']})", "", f"{env['cpu']}, {env['cores']} cores, kernel {env['kernel']}; {env['redis']}", f"Load: {env['load']}", "",
      "| mode | p50 | p99 | requests/s | non-2xx | p50 vs no Redis |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
for r in rows:
    md.append(f"| {r['mode']} | {r['p50_us']:.0f} µs | {r['p99_us']:.0f} µs | {r['rps']:.0f} | {r['non_2xx']} | {r['p50_vs_no_redis']:.2f}× |")
open(out + ".md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
