#!/usr/bin/env bash
# Runs every fuzz target (or those named) for FUZZ_SECONDS each with cargo fuzz on nightly.
# The seeds in fuzz/corpus/<target>/ are read, never written: what a run discovers goes to
# target/fuzz-corpus/<target>/ (kept between runs, outside git). A crash stops the run with its
# input in fuzz/artifacts/<target>/; turn it into a regression test before fixing it.
#   fuzz/run.sh [target...]     FUZZ_SECONDS=600 (default)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-600}"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(media_playlist master_merge copilot state_item)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal >&2
cargo_fuzz=$(../tests/env/build-cargo-fuzz.sh)

for t in "${targets[@]}"; do
  scratch="../target/fuzz-corpus/$t"
  mkdir -p "$scratch"
  echo "== $t: ${seconds}s" >&2
  log=$(mktemp)
  # -max_len bounds one input (a master playlist's own limit is 1 MiB; 64 KiB keeps runs fast);
  # -rss_limit_mb catches unbounded allocation.
  if ! RUSTUP_TOOLCHAIN=nightly "$cargo_fuzz" fuzz run --target-dir ../target/fuzz "$t" \
      "$scratch" "corpus/$t" -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log" >&2
    echo "fuzz target $t FAILED: input in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  echo "$t: ${seconds}s, ${runs} executions, ${cov:-cov: ?}, no crash, corpus $(ls "$scratch" | wc -l) inputs"
  rm -f "$log"
done
