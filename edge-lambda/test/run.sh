#!/usr/bin/env bash
# Runs the copilot's Node tests (edge-lambda/test/*.test.js) on the committed bundle against
# DynamoDB Local. Installs the test dependencies from package-lock.json when missing (npm ci).
# Uses the environment in AWS_ENDPOINT_URL_DYNAMODB when one is set; otherwise starts
# tests/env/up.sh in a state dir of its own ($CVS_EDGE_STATE_DIR, default <repo>/.cvs-env-edge)
# and always stops it. With arguments, runs `node ARGS...` in that environment instead (make
# bench-edge: edge-lambda/test/run.sh bench/bench.js).
set -euo pipefail

EDGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(cd "$EDGE_DIR/.." && pwd)"
"$EDGE_DIR/test/npm-ci.sh"

if [[ -z "${AWS_ENDPOINT_URL_DYNAMODB:-}" ]]; then
  export CVS_STATE_DIR="${CVS_EDGE_STATE_DIR:-$REPO/.cvs-env-edge}"
  trap '"$REPO/tests/env/down.sh"' EXIT
  env_lines="$("$REPO/tests/env/up.sh")"
  eval "$env_lines"
fi
cd "$EDGE_DIR"
if [[ $# -gt 0 ]]; then
  node "$@"
else
  node --test --test-concurrency=1 test/*.test.js
fi
