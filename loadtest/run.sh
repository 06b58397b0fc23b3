#!/usr/bin/env bash
# The load harness in one command: builds tier1 and the stream client in release mode, installs
# oha if it is missing (cargo install, into .tools/oha), then runs every case in loadtest/cases/
# against the direct call, nginx and tier1 (loadtest/run.py). wrk and nginx come from Debian
# (apt-get install wrk nginx). Results: loadtest/results/load-<UTC>.{json,md}.
# Usage: loadtest/run.sh [--quick] [--only CASE[,CASE...]]
set -euo pipefail
cd "$(dirname "$0")/.."
for bin in wrk nginx taskset redis-server python3; do
  command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install wrk nginx util-linux redis-server)"; exit 1; }
done
# oha only when a chosen case uses it (`--only` naming none of them skips the install).
only=$(printf '%s\n' "$@" | awk 'p {print; exit} /^--only$/ {p=1} /^--only=/ {sub(/^--only=/, ""); print; exit}')
needs_oha=1
if [ -n "$only" ]; then
  needs_oha=0
  for c in ${only//,/ }; do grep -qs '^load = "oha"' "loadtest/cases/$c/case.toml" && needs_oha=1; done
fi
if [ "$needs_oha" = 1 ] && ! command -v oha >/dev/null && [ ! -x .tools/oha/bin/oha ]; then
  echo "installing oha (fixed-rate load) into .tools/oha"
  cargo install oha --locked --root .tools/oha
fi
cargo build --release --quiet --bin tier1 --example stream_load
# 5,000 streams through tier1 hold 10,000 sockets in one process.
ulimit -n "$(ulimit -Hn)"
exec python3 loadtest/run.py "$@"
