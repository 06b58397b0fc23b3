#!/usr/bin/env bash
# tier1 beside "the limit": the same small non-streaming chat load sent to the mock upstream
# directly, through nginx (proxy_pass, upstream keepalive) and through tier1 (auth, routing, a
# local rate limit, metrics). nginx and tier1 each run as one process pinned to CPU 0; wrk and the
# mock upstream share CPU 1. Reported per system: throughput at saturation, latency p50/p90/p99/
# p99.9 (and what the proxy adds over the direct call), CPU seconds per 10,000 requests (from
# /proc/PID/stat), RSS idle and under load, and tier1_overhead_seconds' p50 from /metrics.
# Results go to loadtest/results/baseline-<date>.{json,md}.
# Usage: loadtest/baseline/run.sh [seconds per run, default 10] [connections, default 32]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-32}
for bin in wrk nginx taskset curl python3; do
  command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install wrk nginx util-linux curl)"; exit 1; }
done
cargo build --release --quiet
bin=$PWD/target/release/tier1
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not up: $1"; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

mport=$(free_port)
taskset -c 1 "$bin" mock-upstream --listen "127.0.0.1:$mport" 2>"$work/mock.log" &
mock_pid=$!
wait_up "http://127.0.0.1:$mport/_mock/stats"

nport=$(free_port)
mkdir -p "$work/nginx/tmp"
sed -e "s/UPSTREAM_PORT/$mport/" -e "s/LISTEN_PORT/$nport/" loadtest/baseline/nginx.conf > "$work/nginx/nginx.conf"
taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
wait_up "http://127.0.0.1:$nport/"

tport=$(free_port)
{ cat loadtest/baseline/tier1.toml; printf '\n[providers.up]\nkind = "openai"\nbase_url = "http://127.0.0.1:%s/v1"\n' "$mport"; } > "$work/tier1.toml"
BENCH_FRONT_KEY=bench-front-key taskset -c 0 "$bin" --config "$work/tier1.toml" --listen "127.0.0.1:$tport" 2>"$work/tier1.log" &
tier1_pid=$!
wait_up "http://127.0.0.1:$tport/readyz"

# run NAME PORT PID -> "NAME requests rps p50 p90 p99 p999 cpu_ticks mock_ticks rss_idle rss_load non2xx"
run() {
  local name=$1 port=$2 pid=$3 url rss_idle t0 t1 m0 m1
  url="http://127.0.0.1:$port/v1/chat/completions"
  rss_idle=$(rss_kib "$pid")
  taskset -c 1 wrk -t1 -c"$conns" -d2s -s loadtest/baseline/post.lua "$url" >/dev/null
  t0=$(cpu_ticks "$pid"); m0=$(cpu_ticks "$mock_pid")
  taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency -s loadtest/baseline/post.lua "$url" > "$work/$name.wrk"
  t1=$(cpu_ticks "$pid"); m1=$(cpu_ticks "$mock_pid")
  local requests rps p50 p90 p99 non2xx
  requests=$(awk '/requests in/ {print $1}' "$work/$name.wrk")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$name.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$work/$name.wrk")
  p90=$(awk '$1=="90%" {print $2}' "$work/$name.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/$name.wrk")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/$name.wrk")
  echo "$name $requests $rps $p50 $p90 $p99 $((t1 - t0)) $((m1 - m0)) $rss_idle $(rss_kib "$pid") ${non2xx:-0}"
}

lines=("$(run direct "$mport" "$mock_pid")" "$(run nginx "$nport" "$nginx_pid")" "$(run tier1 "$tport" "$tier1_pid")")
curl -s "http://127.0.0.1:$tport/metrics" > "$work/metrics.txt"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=loadtest/results/baseline-$stamp
python3 loadtest/baseline/report.py "$out" "$secs" "$conns" "$work/metrics.txt" "$(getconf CLK_TCK)" "${lines[@]}"
