#!/usr/bin/env bash
# Builds a pinned Go tool from its Go module, once per version, into a cache outside the
# repository, and prints the binary's path on stdout (progress on stderr), like build-helm.sh.
#
#   tests/env/build-go-tool.sh kubeconform   # validates the chart's rendered objects (chart-lint)
#   tests/env/build-go-tool.sh crane         # builds the OCI image without an engine (make image)
#
# Neither module has replace directives, so `go install module@version` builds it as released.
set -euo pipefail

tool="${1:?usage: build-go-tool.sh kubeconform|crane}"
case "$tool" in
  kubeconform)
    version="${CVS_KUBECONFORM_VERSION:-v0.8.0}"
    package="github.com/yannh/kubeconform/cmd/kubeconform"
    ;;
  crane)
    version="${CVS_CRANE_VERSION:-v0.22.1}"
    package="github.com/google/go-containerregistry/cmd/crane"
    ;;
  *) echo "[build-go-tool] unknown tool '$tool' (kubeconform or crane)" >&2; exit 2 ;;
esac

CACHE_ROOT="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}"
BIN_DIR="$CACHE_ROOT/bin/$tool-$version"

if [[ -x "$BIN_DIR/$tool" ]]; then
  echo "$BIN_DIR/$tool"
  exit 0
fi
command -v go >/dev/null || { echo "[build-go-tool] go is required to build $tool" >&2; exit 1; }
echo "[build-go-tool] building $tool $version (a minute or two on a cold cache)" >&2
mkdir -p "$BIN_DIR"
tmp="$(mktemp -d "$BIN_DIR/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0 GOBIN="$tmp" \
  go install -trimpath -ldflags "-s -w" "$package@$version" >&2
mv "$tmp/$tool" "$BIN_DIR/$tool"
echo "$BIN_DIR/$tool"
