#!/usr/bin/env bash
# Builds the real control-plane binaries the e2e suite runs against (kube-apiserver, kubectl,
# etcd, etcdutl) from Go modules, once per version, into a cache outside the repository.
#
# k8s.io/kubernetes pins its staging modules at v0.0.0 with `=> ./staging/...` replaces, which Go
# ignores in a dependency, so `go install k8s.io/kubernetes/cmd/...@v1.N.x` is refused. A wrapper
# module that requires k8s.io/kubernetes and replaces every staging module with its published
# v0.N.x release builds it. The staging list is read from that release's own go.mod.
#
# Prints the directory holding the binaries on stdout; progress goes to stderr.
set -euo pipefail

KUBE_VERSION="${CVS_KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${CVS_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}"
BIN_DIR="$CACHE_ROOT/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export CGO_ENABLED=0

log() { echo "[build-binaries] $*" >&2; }

# Bump when the way the binaries are built changes, so caches built the old way are rebuilt.
RECIPE="2"   # 2: version stamped into kube-apiserver/kubectl with -X ldflags
STAMP="$BIN_DIR/.built"
STAMP_WANT="recipe=$RECIPE kube=$KUBE_VERSION etcd=$ETCD_VERSION"

if [[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/kubectl" && -x "$BIN_DIR/etcd" \
      && -x "$BIN_DIR/etcdutl" \
      && -f "$STAMP" && "$(<"$STAMP")" == "$STAMP_WANT" ]]; then
  log "cached: $BIN_DIR"
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build the control plane"; exit 1; }
mkdir -p "$BIN_DIR"
work="$CACHE_ROOT/build"
mkdir -p "$work"

build_kube() {
  local dir="$work/kube-$KUBE_VERSION"
  mkdir -p "$dir"
  local minor="${KUBE_VERSION#v1.}"     # 36.3
  local staging_version="v0.$minor"     # v0.36.3
  log "resolving k8s.io/kubernetes@$KUBE_VERSION"
  local gomod
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [[ -f "$gomod" ]] || { log "could not download k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
  local go_line
  go_line=$(grep -E '^go [0-9]' "$gomod" | head -1)
  {
    echo "module cvs.dev/controlplane"
    echo
    echo "$go_line"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "$gomod" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  log "wrapper go.mod replaces $(grep -c '=>' "$dir/go.mod") staging modules with $staging_version"
  (cd "$dir" && go mod tidy -e >&2 2>"$dir/tidy.log" || true)
  (cd "$dir" && go mod download >&2)
  # Without these the binaries report "v0.0.0-master+$Format:%H$", which `kubectl version` refuses
  # to parse and which breaks anything that compares the server version (e.g. Helm's kubeVersion).
  local minor_only="${minor%%.*}"   # 36
  local build_date
  build_date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "${gomod%.mod}.info" 2>/dev/null || true)
  [[ -n "$build_date" ]] || build_date="1970-01-01T00:00:00Z"
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor_only"
    ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  log "building kube-apiserver (several minutes on a cold cache)"
  (cd "$dir" && go build -tags tools -trimpath -ldflags "$ldflags" -o "$BIN_DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  log "building kubectl"
  (cd "$dir" && go build -tags tools -trimpath -ldflags "$ldflags" -o "$BIN_DIR/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
  mv "$BIN_DIR/kube-apiserver.tmp" "$BIN_DIR/kube-apiserver"
  mv "$BIN_DIR/kubectl.tmp" "$BIN_DIR/kubectl"
}

# Builds binary <name> of etcd's Go module <module> (at ETCD_VERSION) into BIN_DIR, through a
# wrapper module that requires it: etcd itself, and etcdutl, which restores a snapshot of the
# fault suite's etcd (tests/env/component.sh restore etcd).
build_etcd_binary() {
  local name="$1" module="$2"
  local dir="$work/$name-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module cvs.dev/${name}build

go 1.26.0

require $module $ETCD_VERSION
GOMOD
  cat >"$dir/tools.go" <<GO
//go:build tools

package ${name}build

import _ "$module"
GO
  (cd "$dir" && go mod tidy -e >&2 2>"$dir/tidy.log" || true)
  log "building $name $ETCD_VERSION"
  (cd "$dir" && go build -tags tools -trimpath -ldflags "-s -w" -o "$BIN_DIR/$name.tmp" "$module")
  mv "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
}

rm -f "$STAMP"
[[ -x "$BIN_DIR/etcd" ]] || build_etcd_binary etcd go.etcd.io/etcd/server/v3
[[ -x "$BIN_DIR/etcdutl" ]] || build_etcd_binary etcdutl go.etcd.io/etcd/etcdutl/v3
build_kube
echo "$STAMP_WANT" >"$STAMP"
log "built: $BIN_DIR"
echo "$BIN_DIR"
