#!/usr/bin/env bash
# Installs what `make image` needs, non-interactively: Rust's x86_64-unknown-linux-musl target
# (rustup) and, with --c, Debian's musl-tools (musl-gcc, for the C parts of the operator's
# dependencies: aws-lc-sys, ring, jemalloc). crane is built on first use by
# tests/env/build-go-tool.sh.
set -euo pipefail
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  echo "[image] rustup target add x86_64-unknown-linux-musl" >&2
  rustup target add x86_64-unknown-linux-musl >&2
fi
if [[ "${1:-}" == "--c" ]] && ! command -v musl-gcc >/dev/null; then
  echo "[image] installing musl-tools (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q musl-tools >&2 || { apt-get update -q >&2 && apt-get install -y -q musl-tools >&2; }
fi
