# shellcheck shell=bash disable=SC2034 # the variables here are used by up.sh and down.sh
# Shared by up.sh and down.sh: where state lives, and how processes are tagged, found and stopped.
#
# Every process up.sh starts runs in its own session (setsid) with CVS_ENV_TAG=<component>@<state
# dir> in its environment. A pid file is trusted only while /proc/<pid>/environ still carries that
# tag, so a recycled pid is never killed; and scanning /proc for the tag also finds any child a
# component spawned (and anything left behind by an up.sh that was killed half-way).

CVS_ENV_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CVS_ENV_SCRIPTS/../.." && pwd)"
CACHE_ROOT="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}"

STATE_DIR="${CVS_STATE_DIR:-$REPO_ROOT/.cvs-env}"
# Absolute, so tags, pid files and env.sh don't depend on the caller's working directory.
case "$STATE_DIR" in
  /*) ;;
  *) STATE_DIR="$PWD/$STATE_DIR" ;;
esac
STATE_DIR="${STATE_DIR%/}"
RUN_DIR="$STATE_DIR/run"
LOG_DIR="$STATE_DIR/logs"

# Start order; stopped in reverse.
ALL_COMPONENTS=(etcd kube-apiserver dynamodb moto)

STOP_TERM_WAIT="${CVS_ENV_STOP_WAIT:-15}"   # seconds between TERM and KILL

log() { printf '[%s] %s\n' "${LOG_PREFIX:-cvs-env}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

component_tag() { printf 'CVS_ENV_TAG=%s@%s' "$1" "$STATE_DIR"; }

# True if PID is a live (non-zombie) process whose environment carries TAG.
pid_has_tag() {
  local pid="$1" tag="$2"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/environ" ]] || return 1
  grep -qzxF -- "$tag" "/proc/$pid/environ" 2>/dev/null
}

# Prints the pid recorded for COMPONENT if that process is alive and still ours.
component_pid() {
  local name="$1" pid
  [[ -s "$RUN_DIR/$name.pid" ]] || return 1
  pid="$(<"$RUN_DIR/$name.pid")"
  pid_has_tag "$pid" "$(component_tag "$name")" || return 1
  echo "$pid"
}

# Prints every live pid carrying COMPONENT's tag (the component and any children), one a line.
tagged_pids() {
  local tag f pid
  tag="$(component_tag "$1")"
  # One grep over every environ file; files of processes that vanish meanwhile are ignored.
  while IFS= read -r f; do
    pid="${f#/proc/}"
    pid="${pid%/environ}"
    [[ "$pid" == "$$" || "$pid" == "${BASHPID:-$$}" ]] && continue
    echo "$pid"
  done < <(grep -lzxF -- "$tag" /proc/[0-9]*/environ 2>/dev/null || true)
  return 0
}

# Recorded port of COMPONENT (empty if none).
component_port() { [[ -s "$RUN_DIR/$1.port" ]] && cat "$RUN_DIR/$1.port" || true; }

# Stops COMPONENT: TERM to its process group and every tagged process, bounded wait, then KILL.
# Removes its pid and port files. Returns non-zero only if something could not be killed.
stop_component() {
  local name="$1" pid pids deadline
  pid="$(component_pid "$name" || true)"
  mapfile -t pids < <(tagged_pids "$name")
  if [[ -z "$pid" && ${#pids[@]} -eq 0 ]]; then
    rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.port" "$RUN_DIR/$name".*.port
    return 0
  fi
  log "stopping $name (pids: $(printf '%s\n' ${pid:+"$pid"} "${pids[@]}" | sort -un | paste -sd' '))"
  # The leader was started by setsid, so its pid is also its process-group id.
  [[ -n "$pid" ]] && kill -TERM -- "-$pid" 2>/dev/null || true
  local p
  STOPPED_LEADERS+=(${pid:+"$pid"} "${pids[@]}")
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  deadline=$((SECONDS + STOP_TERM_WAIT))
  while (( SECONDS < deadline )); do
    mapfile -t pids < <(tagged_pids "$name")
    [[ ${#pids[@]} -eq 0 ]] && break
    sleep 0.2
  done
  mapfile -t pids < <(tagged_pids "$name")
  if [[ ${#pids[@]} -gt 0 ]]; then
    log "$name did not exit within ${STOP_TERM_WAIT}s; sending KILL to ${pids[*]}"
    [[ -n "$pid" ]] && kill -KILL -- "-$pid" 2>/dev/null || true
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    while (( SECONDS < deadline )); do
      mapfile -t pids < <(tagged_pids "$name")
      [[ ${#pids[@]} -eq 0 ]] && break
      sleep 0.2
    done
    mapfile -t pids < <(tagged_pids "$name")
    if [[ ${#pids[@]} -gt 0 ]]; then
      log "error: could not stop $name: still running: ${pids[*]}"
      return 1
    fi
  fi
  rm -f "$RUN_DIR/$name.pid" "$RUN_DIR/$name.port" "$RUN_DIR/$name".*.port
  return 0
}

STOPPED_LEADERS=()   # every pid stop_component signalled

# Dead processes linger as zombies until their parent (init, since up.sh has exited) reaps them,
# which can take a second or two; wait (bounded) so `pgrep` right after down.sh shows nothing.
wait_reaped() {
  local deadline=$((SECONDS + ${1:-5})) p left
  while (( SECONDS < deadline )); do
    left=0
    for p in "${STOPPED_LEADERS[@]}"; do [[ -e "/proc/$p" ]] && left=1; done
    (( left )) || return 0
    sleep 0.1
  done
  return 0
}

# Takes an exclusive lock on the state dir (fd 9) so up.sh and down.sh never interleave.
lock_state_dir() {
  local wait="${1:-600}"
  mkdir -p "$STATE_DIR"
  exec 9>"$STATE_DIR/.lock"
  if ! flock -w "$wait" 9; then
    die "another up.sh/down.sh holds $STATE_DIR/.lock for more than ${wait}s"
  fi
}
