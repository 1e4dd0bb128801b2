#!/usr/bin/env bash
# The local demo: the whole system on loopback. It starts the environment (kube-apiserver and
# etcd, DynamoDB Local, moto), an HLS origin simulator serving one live event in two regions,
# installs the CRDs, applies a ClusteredStream whose instances probe those origins, with its state
# table in DynamoDB Local and an SNS topic in moto, and runs the operator in the foreground.
# Ctrl-C stops the operator, the simulator and the environment.
#
#   CVS_DEMO_SECONDS=N  stop by itself after N seconds (for unattended runs)
#   CVS_DEMO_KEEP=1     leave the environment running after the demo
set -euo pipefail
cd "$(dirname "$0")/.."
ns=demo
target="${CARGO_TARGET_DIR:-target}"

cargo build -q --locked -p operator -p hls-sim --bin cvs-operator --bin hls-origin-sim

sim_pid=""
cleanup() {
  [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null || true
  if [[ "${CVS_DEMO_KEEP:-0}" != 1 ]]; then tests/env/down.sh; fi
}
trap cleanup EXIT
env_lines=$(tests/env/up.sh)
eval "$env_lines"

ready="$CVS_STATE_DIR/demo-origin.json"
rm -f "$ready"
"$target/debug/hls-origin-sim" --regions us-east-1,eu-west-1 --streams 1 --renditions 3 \
  --target-duration 2 --ready-file "$ready" >/dev/null 2>"$CVS_STATE_DIR/logs/demo-origin.log" &
sim_pid=$!
for _ in $(seq 50); do [[ -s "$ready" ]] && break; sleep 0.1; done
[[ -s "$ready" ]] || { echo "the HLS origin simulator did not start; see $CVS_STATE_DIR/logs/demo-origin.log" >&2; exit 1; }
field() { python3 -c "import json,sys; print(json.load(open('$ready'))$1)"; }
control=$(field "['control']")
east=$(field "['regions']['us-east-1']")
west=$(field "['regions']['eu-west-1']")

# moto checks no signature, only which service the Authorization header names, so the topic is
# created with a plain Query API call.
topic=$(curl -sf -XPOST "$AWS_ENDPOINT_URL_SNS/" -d "Action=CreateTopic&Name=cvs-demo" \
  -H "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/$AWS_REGION/sns/aws4_request, SignedHeaders=host, Signature=0" \
  | sed -n 's:.*<TopicArn>\(.*\)</TopicArn>.*:\1:p')
[[ -n "$topic" ]] || { echo "could not create the demo SNS topic in moto" >&2; exit 1; }

kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/clusteredstreams.cvs.dev crd/streaminstances.cvs.dev >/dev/null
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$ns" -f - <<YAML
apiVersion: cvs.dev/v1alpha1
kind: ClusteredStream
metadata:
  name: live-event
spec:
  stateTable: {name: cvs-demo-state, region: us-east-1, create: true}
  failover: {mode: Automatic, holdDownSeconds: 10}
  minOpen: 1
  notifications: {snsTopicArn: "$topic"}
---
apiVersion: cvs.dev/v1alpha1
kind: StreamInstance
metadata:
  name: live-event-us-east-1
spec:
  clusteredStream: live-event
  region: us-east-1
  cloudfront: {domain: d1use1demo.cloudfront.net}
  origin: {url: "$east/s0001/master.m3u8"}
---
apiVersion: cvs.dev/v1alpha1
kind: StreamInstance
metadata:
  name: live-event-eu-west-1
spec:
  clusteredStream: live-event
  region: eu-west-1
  cloudfront: {domain: d2euw1demo.cloudfront.net}
  origin: {url: "$west/s0001/master.m3u8"}
YAML

cat >&2 <<TXT

The operator is starting on namespace '$ns' (automatic failover, 10 s hold-down). In another shell:
  source $CVS_STATE_DIR/env.sh
  kubectl get cvs -n $ns -w
  # freeze every rendition in us-east-1: it turns Stale and is closed by failover
  curl -s -XPOST $control/faults -d '{"kind":"freeze","region":"us-east-1"}'
  # heal it: Healthy again, reopened after the hold-down
  curl -s -XDELETE $control/faults
  kubectl patch streaminstance live-event-eu-west-1 -n $ns --type merge -p '{"spec":{"distroOpen":false}}'
  kubectl describe streaminstance live-event-us-east-1 -n $ns
  curl -s http://127.0.0.1:8080/metrics | grep ^cvs_
Ctrl-C stops the demo.

TXT

"$target/debug/cvs-operator" run --namespace "$ns" --listen 127.0.0.1:8080 --allow-private-origins &
op=$!
if [[ -n "${CVS_DEMO_SECONDS:-}" ]]; then
  sleep "$CVS_DEMO_SECONDS"
  kubectl get cvs -n "$ns" -o wide
  kubectl get cstream live-event -n "$ns" \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}){"\n"}{end}'
  kill -TERM "$op"
fi
wait "$op"
