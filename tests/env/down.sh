#!/usr/bin/env bash
# Stops everything tests/env/up.sh started for this state dir (CVS_STATE_DIR, default
# <repo>/.cvs-env): TERM, a bounded wait, then KILL, for each component and any child it spawned.
# Only processes tagged with this state dir are touched. Logs stay in $CVS_STATE_DIR/logs; pid
# files and env.sh are removed. Idempotent: exits 0 when nothing is running.
set -euo pipefail

# shellcheck disable=SC2034 # used by log() in lib.sh
LOG_PREFIX="down"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument: $1" ;;
esac

if [[ ! -d "$STATE_DIR" ]]; then
  log "no state dir at $STATE_DIR; nothing to stop"
  exit 0
fi

lock_state_dir 900
# Clear env.sh first, so nothing picks up endpoints that are going away.
rm -f "$STATE_DIR/env.sh" "$STATE_DIR/env.sh.tmp"

failed=()
stopped_any=0
for (( i=${#ALL_COMPONENTS[@]}-1; i>=0; i-- )); do
  name="${ALL_COMPONENTS[$i]}"
  if [[ -n "$(component_pid "$name" || true)" || -n "$(tagged_pids "$name")" ]]; then
    stopped_any=1
  fi
  stop_component "$name" || failed+=("$name")
done
rm -f "$RUN_DIR"/*.pid "$RUN_DIR"/*.tmp 2>/dev/null || true
wait_reaped 5

if (( ${#failed[@]} )); then
  die "could not stop: ${failed[*]} (see $STATE_DIR/logs)"
fi
if (( stopped_any )); then
  log "stopped; logs kept in $STATE_DIR/logs"
else
  log "nothing was running"
fi
