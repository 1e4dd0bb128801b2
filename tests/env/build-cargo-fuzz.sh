#!/usr/bin/env bash
# Builds cargo-fuzz from crates.io, once per version, into a cache outside the repository, and
# prints the binary's path on stdout (progress on stderr). `make fuzz` uses it with the nightly
# toolchain (`rustup toolchain install nightly` when it is missing).
set -euo pipefail

FUZZ_VERSION="${CVS_CARGO_FUZZ_VERSION:-0.13.2}"
CACHE_ROOT="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}"
ROOT="$CACHE_ROOT/bin/cargo-fuzz-$FUZZ_VERSION"

if [[ -x "$ROOT/bin/cargo-fuzz" ]]; then
  echo "$ROOT/bin/cargo-fuzz"
  exit 0
fi
echo "[build-cargo-fuzz] building cargo-fuzz $FUZZ_VERSION" >&2
tmp_target=$(mktemp -d)
trap 'rm -rf "$tmp_target"' EXIT
CARGO_TARGET_DIR="$tmp_target" cargo install --quiet --locked --version "$FUZZ_VERSION" \
  --root "$ROOT.tmp" cargo-fuzz >&2
rm -rf "$ROOT"
mv "$ROOT.tmp" "$ROOT"
echo "$ROOT/bin/cargo-fuzz"
