#!/usr/bin/env bash
# Builds helm from its Go module, once per version, into a cache outside the repository, and
# prints the binary's path on stdout (progress on stderr). Used to lint and render the chart.
set -euo pipefail

HELM_VERSION="${CVS_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}"
BIN_DIR="$CACHE_ROOT/bin/helm-$HELM_VERSION"

if [[ -x "$BIN_DIR/helm" ]]; then
  echo "$BIN_DIR/helm"
  exit 0
fi
command -v go >/dev/null || { echo "[build-helm] go is required to build helm" >&2; exit 1; }
echo "[build-helm] building helm $HELM_VERSION (a few minutes on a cold cache)" >&2
mkdir -p "$BIN_DIR"
# helm's module has no replace directives, so `go install module@version` builds it as released.
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0 GOBIN="$BIN_DIR/.tmp" \
  go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv "$BIN_DIR/.tmp/helm" "$BIN_DIR/helm"
rmdir "$BIN_DIR/.tmp"
echo "$BIN_DIR/helm"
