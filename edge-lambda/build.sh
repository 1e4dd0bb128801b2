#!/usr/bin/env bash
# Builds the code part of the copilot's Lambda@Edge zip into edge-lambda/bundle/:
#   index.js              the Node.js handler (copied from edge-lambda/js/index.js)
#   edge_lambda.js        wasm-bindgen's CommonJS glue (--target nodejs)
#   edge_lambda_bg.wasm   the edge-lambda crate compiled for wasm32-unknown-unknown
# and their checksums into edge-lambda/bundle.sha256. The operator embeds these files and adds
# config.json when it deploys. Same sources and toolchain -> same bytes.
#
#   edge-lambda/build.sh           build into edge-lambda/bundle/ and rewrite bundle.sha256
#   edge-lambda/build.sh --check   build into a temporary directory and fail if the committed
#                                  bundle or bundle.sha256 differ from it (make edge-drift)
#
# Installs what is missing: the wasm32 target (rustup) and wasm-bindgen-cli at exactly the
# version of the wasm-bindgen crate in Cargo.lock, built once into
# ${CVS_CACHE_DIR:-~/.cache/cvs-operator}/wasm-bindgen-<version>/. Progress goes to stderr.
set -euo pipefail

EDGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$EDGE_DIR/.." && pwd)"
CACHE_ROOT="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}"
# The bundle's bytes depend on the compiler: the committed bundle is built with this one.
TOOLCHAIN="${EDGE_RUST_TOOLCHAIN:-1.95.0}"
TARGET=wasm32-unknown-unknown

log() { echo "edge-build: $*" >&2; }
die() { log "error: $*"; exit 1; }

MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,/^set /{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument: $1" ;;
esac

command -v cargo >/dev/null || die "cargo is required (rustup)"
command -v rustup >/dev/null || die "rustup is required to add the $TARGET target"

# The toolchain: the default one when it is $TOOLCHAIN, else $TOOLCHAIN installed by rustup.
cargo_cmd=(cargo)
if [[ "$(rustc --version 2>/dev/null)" != "rustc $TOOLCHAIN "* ]]; then
  if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    log "installing Rust $TOOLCHAIN (the bundle's bytes depend on the compiler)"
    rustup toolchain install "$TOOLCHAIN" --profile minimal >&2
  fi
  cargo_cmd=(rustup run "$TOOLCHAIN" cargo)
fi
sysroot="$(rustup run "$TOOLCHAIN" rustc --print sysroot 2>/dev/null || rustc --print sysroot)"
if [[ ! -d "$sysroot/lib/rustlib/$TARGET" ]]; then
  log "adding the $TARGET target"
  rustup target add --toolchain "$TOOLCHAIN" "$TARGET" >&2 2>/dev/null \
    || rustup target add "$TARGET" >&2
fi

# wasm-bindgen-cli at exactly the crate's version.
version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$REPO/Cargo.lock")"
[[ -n "$version" ]] || die "no wasm-bindgen in Cargo.lock"
wb_root="$CACHE_ROOT/wasm-bindgen-$version"
wasm_bindgen="$wb_root/bin/wasm-bindgen"
if [[ ! -x "$wasm_bindgen" ]]; then
  mkdir -p "$CACHE_ROOT"
  (
    flock 9
    if [[ ! -x "$wasm_bindgen" ]]; then
      log "installing wasm-bindgen-cli $version into $wb_root (once; a few minutes)"
      "${cargo_cmd[@]}" install wasm-bindgen-cli --version "$version" --locked --root "$wb_root" >&2
    fi
  ) 9>"$CACHE_ROOT/wasm-bindgen-$version.lock"
fi
[[ "$("$wasm_bindgen" --version)" == "wasm-bindgen $version" ]] \
  || die "$wasm_bindgen is not version $version"

# Compile. Paths are remapped so the bytes do not depend on where the repo or cargo's home is.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
log "compiling edge-lambda for $TARGET"
(
  cd "$REPO"
  RUSTFLAGS="--remap-path-prefix=$REPO=/cvs --remap-path-prefix=$cargo_home=/cargo" \
    "${cargo_cmd[@]}" build --quiet --locked -p edge-lambda --lib --target "$TARGET" \
    --profile edge-wasm --target-dir "$target_dir"
)
wasm="$target_dir/$TARGET/edge-wasm/edge_lambda.wasm"
[[ -f "$wasm" ]] || die "$wasm was not built"

out="$EDGE_DIR/bundle"
if [[ $MODE == check ]]; then
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
rm -f "$out"/edge_lambda* "$out"/index.js
"$wasm_bindgen" --target nodejs --no-typescript --out-dir "$out" --out-name edge_lambda "$wasm"
cp "$EDGE_DIR/js/index.js" "$out/index.js"
sums() { (cd "$1" && sha256sum edge_lambda.js edge_lambda_bg.wasm index.js); }

if [[ $MODE == build ]]; then
  sums "$out" > "$EDGE_DIR/bundle.sha256"
  log "bundle: $(du -cb "$out"/* | tail -1 | cut -f1) bytes in $out; checksums in bundle.sha256"
  cat "$EDGE_DIR/bundle.sha256" >&2
  exit 0
fi

fresh="$(sums "$out")"
if ! diff -u "$EDGE_DIR/bundle.sha256" <(echo "$fresh") >&2; then
  die "edge-lambda/bundle.sha256 differs from a fresh build: run 'make edge-bundle' and commit edge-lambda/bundle and bundle.sha256"
fi
if ! (cd "$EDGE_DIR/bundle" && sha256sum --quiet -c ../bundle.sha256) >&2; then
  die "edge-lambda/bundle/ differs from bundle.sha256: run 'make edge-bundle' and commit the result"
fi
log "edge-lambda/bundle is up to date with its sources"
