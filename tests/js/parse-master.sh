#!/usr/bin/env bash
# Runs parse-master.mjs (hls.js's M3U8 parser) over the given master playlists, installing the
# pinned hls.js with `npm ci` first when node_modules is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$here/node_modules/hls.js" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
exec node "$here/parse-master.mjs" "$@"
