#!/usr/bin/env bash
# Runs the player tests (node --test): installs what is missing first, non-interactively (root, as
# CI and the dev machines are): Debian's chromium and ffmpeg, the npm packages pinned in
# package-lock.json (npm ci), and builds the HLS origin simulator.
#
#   tests/player/run.sh                      every test in tests/player/test/
#   tests/player/run.sh test/edge.test.mjs   some of them
#   PLAYER_RUNS=10 tests/player/run.sh test/failover.test.mjs   the failover measurement
#
# Artefacts (requests, console, player samples, screenshots, summary.txt) go to
# target/player/<stamp>/ (CVS_PLAYER_ARTEFACTS overrides).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
if ((${#missing[@]})); then
  echo "player tests: installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${missing[@]}" >&2
fi
cd "$here"
# npm ci when node_modules is missing or holds other versions than the pinned ones.
if ! node -e '
  const deps = require("./package.json").dependencies;
  for (const [n, v] of Object.entries(deps)) {
    if (require(`./node_modules/${n}/package.json`).version !== v) process.exit(1);
  }' 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
(cd "$repo" && cargo build -q --locked -p hls-sim --bin hls-origin-sim)
if (($#)); then
  exec node --test --test-concurrency=1 "$@"
fi
exec node --test --test-concurrency=1 test/
