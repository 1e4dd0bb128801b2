#!/usr/bin/env bash
# Stops, starts, pauses or resumes ONE component of a running test environment, for fault tests:
#
#   tests/env/component.sh stop   <name>   TERM (bounded wait, then KILL), like down.sh, but it
#                                          keeps the command line and ports to start it again
#   tests/env/component.sh kill   <name>   the same with SIGKILL at once (a crash)
#   tests/env/component.sh start  <name>   starts it again with the same command line, on the same
#                                          port(s), and waits until it answers (90 s at most)
#   tests/env/component.sh pause  <name>   SIGSTOP: the process holds its port but answers nothing
#   tests/env/component.sh resume <name>   SIGCONT
#   tests/env/component.sh status <name>   exit 0 when it runs and answers
#   tests/env/component.sh snapshot etcd   (etcd stopped) copies its database aside
#   tests/env/component.sh restore etcd    (etcd stopped) replaces its data with that copy, as
#                                          an operator restores a backup: etcdutl snapshot
#                                          restore --bump-revision --mark-compacted, so every
#                                          watch is told to list again
#
# <name>: etcd, kube-apiserver, dynamodb or moto, in $CVS_STATE_DIR (default <repo>/.cvs-env).
# What a restart keeps: etcd keeps its data dir (up.sh empties it only on a cold start), so the
# cluster survives; DynamoDB Local (-inMemory) and moto come back EMPTY, as a real restart of
# these emulators would. env.sh stays valid, since the ports do not change.
set -euo pipefail

# shellcheck disable=SC2034 # used by log() in lib.sh
LOG_PREFIX="component"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

READY_TIMEOUT="${CVS_ENV_READY_TIMEOUT:-90}"
PKI_DIR="$STATE_DIR/pki"

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

(( $# == 2 )) || { usage; exit 2; }
action="$1" name="$2"
case "$name" in
  etcd|kube-apiserver|dynamodb|moto) ;;
  *) usage; die "unknown component: $name" ;;
esac

lcurl() { curl --noproxy '*' --silent --show-error --connect-timeout 2 --max-time 5 "$@"; }

# Whether the component answers on its recorded port (the same checks as up.sh's).
answers() {
  local port; port="$(component_port "$name")"
  [[ -n "$port" ]] || return 1
  case "$name" in
    etcd) [[ "$(lcurl "http://127.0.0.1:$port/health")" == *'"health":"true"'* ]] ;;
    kube-apiserver)
      [[ "$(lcurl --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
            "https://127.0.0.1:$port/readyz")" == "ok" ]] ;;
    dynamodb)
      [[ "$(lcurl -X POST "http://127.0.0.1:$port/" --aws-sigv4 "aws:amz:us-east-1:dynamodb" \
            --user "testing:testing" -H 'Content-Type: application/x-amz-json-1.0' \
            -H 'X-Amz-Target: DynamoDB_20120810.ListTables' -d '{}')" == *'"TableNames"'* ]] ;;
    moto)
      [[ "$(lcurl -X POST "http://127.0.0.1:$port/" --aws-sigv4 "aws:amz:us-east-1:sts" \
            --user "testing:testing" -H 'Content-Type: application/x-www-form-urlencoded' \
            -d 'Action=GetCallerIdentity&Version=2011-06-15')" == *'<Arn>'* ]] ;;
  esac
}

SAVED="$RUN_DIR/$name.saved"   # the command line (NUL-separated) and port files of a stopped one

save() {
  local pid f
  pid="$(component_pid "$name")" || die "$name is not running in $STATE_DIR"
  rm -rf "$SAVED"; mkdir -p "$SAVED"
  cp "/proc/$pid/cmdline" "$SAVED/cmdline"
  readlink "/proc/$pid/cwd" >"$SAVED/cwd"
  for f in "$RUN_DIR/$name.port" "$RUN_DIR/$name".*.port; do
    [[ -f "$f" ]] && cp "$f" "$SAVED/"
  done
  return 0
}

case "$action" in
  stop|kill)
    lock_state_dir 120
    save
    if [[ "$action" == kill ]]; then
      pid="$(component_pid "$name")"
      log "killing $name (pid $pid) with SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
      for p in $(tagged_pids "$name"); do kill -KILL "$p" 2>/dev/null || true; done
    fi
    stop_component "$name"
    ;;
  start)
    lock_state_dir 120
    if component_pid "$name" >/dev/null && answers; then
      log "$name already running"; exit 0
    fi
    [[ -s "$SAVED/cmdline" ]] || die "no saved command line for $name (stop it with this script first)"
    cp "$SAVED"/*.port "$RUN_DIR/"
    mapfile -d '' cmd <"$SAVED/cmdline"
    logf="$LOG_DIR/$name.log" pidf="$RUN_DIR/$name.pid"
    [[ -f "$logf" ]] && mv -f "$logf" "$logf.1"
    printf '=== %s: starting %s again on 127.0.0.1:%s\n=== %s\n' "$(date -Is)" "$name" \
      "$(component_port "$name")" "${cmd[*]}" >"$logf"
    log "starting $name again on 127.0.0.1:$(component_port "$name")"
    (
      cd "$(<"$SAVED/cwd")"
      # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
      exec setsid env "$(component_tag "$name")" \
        bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "${cmd[@]}"
    ) >>"$logf" 2>&1 </dev/null 9>&- &
    start=$SECONDS
    until answers >/dev/null 2>&1; do
      if (( SECONDS - start > 10 )) && ! component_pid "$name" >/dev/null; then
        tail -n 20 "$logf" >&2; die "$name exited while starting again"
      fi
      (( SECONDS - start < READY_TIMEOUT )) || { tail -n 20 "$logf" >&2; die "$name not ready after ${READY_TIMEOUT}s"; }
      sleep 0.2
    done
    log "$name ready again after $((SECONDS - start))s"
    ;;
  pause|resume)
    pid="$(component_pid "$name")" || die "$name is not running in $STATE_DIR"
    sig=STOP; [[ "$action" == resume ]] && sig=CONT
    log "$action $name (pid $pid)"
    kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid"
    ;;
  status)
    component_pid "$name" >/dev/null && answers
    ;;
  snapshot|restore)
    [[ "$name" == etcd ]] || die "$action: etcd only"
    lock_state_dir 120
    ! component_pid etcd >/dev/null || die "$action: stop etcd first"
    [[ -s "$SAVED/cmdline" ]] || die "no saved command line for etcd (stop it with this script first)"
    mapfile -d '' cmd <"$SAVED/cmdline"
    # The value of --<flag> in etcd's command line.
    flag() {
      local i
      for ((i = 0; i < ${#cmd[@]} - 1; i++)); do
        [[ "${cmd[i]}" == "--$1" ]] && { echo "${cmd[i + 1]}"; return; }
      done
      die "etcd's command line has no --$1"
    }
    data_dir="$(flag data-dir)"
    [[ "$data_dir" == /* ]] || data_dir="$(<"$SAVED/cwd")/$data_dir"
    snapshot="$RUN_DIR/etcd.snapshot.db"
    if [[ "$action" == snapshot ]]; then
      cp "$data_dir/member/snap/db" "$snapshot.tmp" && mv "$snapshot.tmp" "$snapshot"
      log "etcd database copied to $snapshot"
      exit 0
    fi
    [[ -s "$snapshot" ]] || die "no etcd snapshot (take one with: $0 snapshot etcd)"
    etcdutl="$(dirname "${cmd[0]}")/etcdutl"
    [[ -x "$etcdutl" ]] || die "$etcdutl missing (tests/env/build-binaries.sh builds it)"
    # Read into variables first: a flag missing inside the command's arguments would only end
    # its own substitution, and etcdutl would run with an empty value.
    member="$(flag name)"
    cluster="$(flag initial-cluster)"
    peer_urls="$(flag initial-advertise-peer-urls)"
    rm -rf "$data_dir.restored"
    # A database copied from a data dir has no snapshot hash. The revision is bumped past every
    # revision issued since the copy and marked compacted, as etcd's guide for Kubernetes says:
    # a watch from before the restore is answered 410 Gone and lists again.
    "$etcdutl" snapshot restore "$snapshot" --skip-hash-check \
      --name "$member" \
      --initial-cluster "$cluster" \
      --initial-advertise-peer-urls "$peer_urls" \
      --data-dir "$data_dir.restored" \
      --bump-revision 1000000000 --mark-compacted >&2
    chmod 700 "$data_dir.restored"
    rm -rf "$data_dir"
    mv "$data_dir.restored" "$data_dir"
    log "etcd data restored from $snapshot"
    ;;
  *) usage; exit 2 ;;
esac
