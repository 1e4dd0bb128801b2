#!/usr/bin/env bash
# `make image-test`: packs a tiny static stand-in for the operator with image/pack.sh (the same
# packing `make image` does for the real musl binary) and reads the archive back
# (tests/image/inspect.py): config, labels, layer, and that the binary is static and runs. Also
# checks pack.sh refuses a dynamically linked binary. Seconds, not the minutes of the operator's
# musl release build, which `make image` runs (and checks with the same inspect.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/image/setup.sh"
out="${CARGO_TARGET_DIR:-$root/target}/image-test"
mkdir -p "$out"
rustc --edition 2021 -O -C strip=symbols --target x86_64-unknown-linux-musl \
  "$root/tests/image/standin.rs" -o "$out/cvs-operator"
rustc --edition 2021 -O --target x86_64-unknown-linux-gnu -C prefer-dynamic \
  "$root/tests/image/standin.rs" -o "$out/cvs-operator-dynamic"

if "$root/image/pack.sh" --binary "$out/cvs-operator-dynamic" --out "$out/dynamic.oci.tar" 2>"$out/dynamic.log"; then
  echo "FAIL image/pack.sh packed a dynamically linked binary"; exit 1
fi
grep -q 'dynamically linked' "$out/dynamic.log" || { cat "$out/dynamic.log"; exit 1; }
echo "ok   image/pack.sh refuses a dynamically linked binary"

"$root/image/pack.sh" --binary "$out/cvs-operator" --out "$out/cvs-operator.oci.tar" --version 0.0.0-test >/dev/null
python3 "$root/tests/image/inspect.py" "$out/cvs-operator.oci.tar" --version 0.0.0-test --run-output "cvs-operator stand-in"
