#!/usr/bin/env bash
# Runs the dashboard's browser tests (node --test): installs what is missing first,
# non-interactively (root, as CI and the dev machines are): Debian's chromium, the npm packages
# pinned in package-lock.json (npm ci); builds the operator and the HLS origin simulator.
#
#   tests/dashboard/run.sh                        every test in tests/dashboard/test/
#   tests/dashboard/run.sh test/page.test.mjs     the page against the fixture server only
#
# test/stack.test.mjs starts its own environment (tests/env/up.sh in .cvs-env-dashboard, or
# CVS_DASHBOARD_STATE_DIR) and always stops it. Screenshots and console logs go to
# target/dashboard-artifacts/ (CVS_DASHBOARD_ARTEFACTS overrides).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ ! -x /usr/bin/chromium ]]; then
  echo "dashboard tests: installing chromium (Debian package)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
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
(cd "$repo" && cargo build -q --locked -p operator -p hls-sim --bin cvs-operator --bin hls-origin-sim)
if (($#)); then
  exec node --test --test-concurrency=1 "$@"
fi
exec node --test --test-concurrency=1 test/
