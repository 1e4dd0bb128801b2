#!/usr/bin/env bash
# The local demo: starts the environment (kube-apiserver, etcd, DynamoDB Local, moto), installs
# the CRDs and the example event, and runs the operator in the foreground. Ctrl-C stops the
# operator and the environment.
#
#   CVS_DEMO_SECONDS=N  stop by itself after N seconds (for unattended runs)
#   CVS_DEMO_KEEP=1     leave the environment running after the demo
set -euo pipefail
cd "$(dirname "$0")/.."
ns=demo

cargo build -q -p operator --locked
bin="${CARGO_TARGET_DIR:-target}/debug/cvs-operator"

if [[ "${CVS_DEMO_KEEP:-0}" != 1 ]]; then
  trap 'tests/env/down.sh' EXIT
fi
env_lines=$(tests/env/up.sh)
eval "$env_lines"

kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/clusteredstreams.cvs.dev crd/streaminstances.cvs.dev >/dev/null
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$ns" -f manifests/example.yaml

cat >&2 <<TXT

The operator is starting on namespace '$ns'. In another shell:
  source $CVS_STATE_DIR/env.sh
  kubectl get cvs -n $ns
  kubectl patch streaminstance live-event-eu-west-1 -n $ns --type merge -p '{"spec":{"distroOpen":false}}'
  kubectl describe streaminstance live-event-eu-west-1 -n $ns
  curl -s http://127.0.0.1:8080/metrics | grep ^cvs_
Ctrl-C stops the demo.

TXT

"$bin" run --namespace "$ns" --listen 127.0.0.1:8080 &
op=$!
if [[ -n "${CVS_DEMO_SECONDS:-}" ]]; then
  sleep "$CVS_DEMO_SECONDS"
  kubectl get cvs -n "$ns" -o wide
  kill -TERM "$op"
fi
wait "$op"
