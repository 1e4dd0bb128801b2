#!/usr/bin/env bash
# Installs edge-lambda's Node dependencies (pinned in package-lock.json) unless node_modules
# already holds exactly them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v npm >/dev/null || { echo "npm is required (Node.js 20+)" >&2; exit 1; }
stamp=node_modules/.cvs-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "edge-lambda: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi
