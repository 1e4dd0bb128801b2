#!/usr/bin/env bash
# Runs parse-master.mjs (hls.js's M3U8 parser) over the given master playlists, installing the
# pinned hls.js with `npm ci` first unless node_modules already holds exactly it.
#
# Tests call this script in parallel. The check and the install share one lock, and the stamp is
# written only after `npm ci` has finished: a directory node_modules/hls.js alone proves nothing,
# since `npm ci` creates it before the files inside are complete (a concurrent run once read a
# half-written hls.mjs and failed with "Unexpected end of input").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v npm >/dev/null || { echo "npm is required (Node.js 20+)" >&2; exit 1; }
(
  flock 9
  stamp="$here/node_modules/.cvs-lock.sha256"
  want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
  fi
) 9>"$here/.install.lock"
exec node "$here/parse-master.mjs" "$@"
