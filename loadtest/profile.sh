#!/usr/bin/env bash
# Instructions per proxied request, tier1 only: the release binary under callgrind (repeatable
# counts, whatever else the machine does), a fixed wrk load through it to the mock upstream, then
# the per-request total and the top functions by inclusive cost.
# Usage: loadtest/profile.sh [seconds, default 15]   (needs valgrind and wrk)
# PROFILE_OTLP=RATIO: traces on at that sample ratio, exported to a local OTLP sink that answers
# 200 to every POST (the cost of tracing, not of a collector).
# PROFILE_LOG=SAMPLE: the access log on (`[log] level = "info"`, `sample = SAMPLE`, as a user's
# default config with 1.0), its lines to a file; off by default (the cases' `sample = 0.0`).
# PROFILE_BIN=PATH: profile that binary instead of building target/release/tier1 (a build of
# another commit, for a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
if [ -n "${PROFILE_BIN:-}" ]; then
  bin=$PROFILE_BIN
else
  cargo build --release --quiet --bin tier1
  bin=$PWD/target/release/tier1
fi
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "not up: $1"; exit 1; }
mport=$(free_port); tport=$(free_port)
"$bin" mock-upstream --listen "127.0.0.1:$mport" 2>/dev/null &
wait_up "http://127.0.0.1:$mport/_mock/stats"
{ if [ -n "${PROFILE_LOG:-}" ]; then
    sed -e 's/^level = "warn"$/level = "info"/' -e "s/^sample = 0.0$/sample = $PROFILE_LOG/" loadtest/cases/common.toml
  else
    cat loadtest/cases/common.toml
  fi
  printf '[[routes]]\nname = "bench"\ntargets = [{ provider = "up", model = "m" }]\n'
  printf '[providers.up]\nkind = "openai"\nbase_url = "http://127.0.0.1:%s/v1"\n' "$mport"; } > "$work/tier1.toml"
if [ -n "${PROFILE_OTLP:-}" ]; then
  oport=$(free_port)
  python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$oport" &
  printf '[observability.otlp]\nendpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' "$oport" "$PROFILE_OTLP" >> "$work/tier1.toml"
fi
BENCH_FRONT_KEY=bench-front-key valgrind --tool=callgrind --callgrind-out-file="$work/cg" \
  "$bin" --config "$work/tier1.toml" --listen "127.0.0.1:$tport" >"$work/access.log" 2>"$work/valgrind.log" &
vg=$!
wait_up "http://127.0.0.1:$tport/readyz"
url=http://127.0.0.1:$tport/v1/chat/completions
wrk -t1 -c4 -d3s -s loadtest/baseline/post.lua "$url" >/dev/null    # warm the pools
callgrind_control -z "$vg" >/dev/null
wrk -t1 -c8 -d"${secs}s" -s loadtest/baseline/post.lua "$url" > "$work/wrk.txt"
callgrind_control -d "$vg" >/dev/null
sleep 1
kill "$vg"; wait "$vg" 2>/dev/null || true
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
total=$(callgrind_annotate --threshold=100 "$work/cg.1" | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "requests: $requests   instructions: $total   per request: $((total / requests))   access lines: $(wc -l < "$work/access.log")"
callgrind_annotate --threshold=100 --inclusive=yes "$work/cg.1" 2>/dev/null | python3 -c "
import re, sys
n = $requests
for line in sys.stdin:
    m = re.match(r'\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)', line)
    if m and '[' in m.group(2):
        cost = int(m.group(1).replace(',', '')) / n
        if cost >= 1000:
            print(f'{cost:9.0f}  {m.group(2).split(\":\", 1)[-1][:140]}')
" | head -60
echo "callgrind data: $work/cg.1"
