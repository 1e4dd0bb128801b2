#!/usr/bin/env bash
# Builds cargo-deny from crates.io, once per version, into a cache outside the repository, and
# prints the binary's path on stdout (progress on stderr). `make deny` runs it with deny.toml.
set -euo pipefail

DENY_VERSION="${CVS_CARGO_DENY_VERSION:-0.20.2}"
CACHE_ROOT="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}"
ROOT="$CACHE_ROOT/bin/cargo-deny-$DENY_VERSION"

if [[ -x "$ROOT/bin/cargo-deny" ]]; then
  echo "$ROOT/bin/cargo-deny"
  exit 0
fi
echo "[build-cargo-deny] building cargo-deny $DENY_VERSION (several minutes on a cold cache)" >&2
# --locked: the dependency versions cargo-deny was released with. Its own target dir is removed
# afterwards (only the binary is kept).
tmp_target=$(mktemp -d)
trap 'rm -rf "$tmp_target"' EXIT
CARGO_TARGET_DIR="$tmp_target" cargo install --quiet --locked --version "$DENY_VERSION" \
  --root "$ROOT.tmp" cargo-deny >&2
rm -rf "$ROOT"
mv "$ROOT.tmp" "$ROOT"
echo "$ROOT/bin/cargo-deny"
