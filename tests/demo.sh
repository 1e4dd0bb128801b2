#!/usr/bin/env bash
# The local demo (`make demo`): the whole chain on loopback, then a scripted regional failure.
#
# It builds what is missing (the operator and the HLS origin simulator in debug, the real media
# with ffmpeg, the control plane binaries through tests/env/up.sh, the npm packages of
# edge-lambda/ and tests/player/), then starts:
#   - etcd + kube-apiserver, DynamoDB Local and moto (tests/env/up.sh, state dir .cvs-env-demo);
#   - the HLS origin simulator: one live event in us-east-1, eu-west-1 and ap-southeast-1 with real
#     H.264/AAC media (2 s segments, the same media sequence clock in every region);
#   - the operator, with manifests/demo.yaml applied (automatic failover, the merged master and
#     its steering manifest published to two S3 buckets in moto, the copilot deployed to moto's
#     Lambda);
#   - one local CloudFront-like edge per region (tests/player/edge.mjs) running the copilot zip the
#     operator deployed (kept on its way to moto by tests/demo/lambda-capture.mjs and matched to
#     the version's CodeSha256 by tests/demo/deployed-copilot.py: the committed bundle and the
#     config.json the operator baked; viewer-request) against DynamoDB Local;
#   - the player page server (tests/player/serve.mjs), which proxies the published master and
#     steering manifest and maps the CloudFront domains to the local edges;
#   - a headless viewer (hls.js in Chromium, tests/player/watch.mjs) when /usr/bin/chromium exists.
# It prints where to look, then freezes one region, heals it, and prints the timeline of what the
# system did, in ms from the fault (tests/demo/failure.mjs). It then keeps running until Ctrl-C,
# which stops every process it started and the environment.
#
#   tests/demo.sh                     the above (make demo)
#   tests/demo.sh --keep-running      no scripted failure: run until Ctrl-C (alias --no-script)
#   tests/demo.sh --exit-after-script stop everything after the timeline; exit 1 if a step was
#                                     not seen (make demo-check)
#   tests/demo.sh --region R          the region to freeze (default: the one the viewer plays,
#                                     else the steering manifest's first pathway)
#   tests/demo.sh --no-viewer         no headless Chromium
#   make demo DEMO_ARGS=--keep-running
#
# Environment: CVS_DEMO_STATE_DIR (default <repo>/.cvs-env-demo), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

script=1
exit_after=0
viewer=auto
region=""
while (($#)); do
  case "$1" in
    --keep-running | --no-script) script=0 ;;
    --exit-after-script) exit_after=1 ;;
    --no-viewer) viewer=0 ;;
    --region) region="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

ns=demo
cluster=live-event
regions=(us-east-1 eu-west-1 ap-southeast-1)
declare -A domain=([us-east-1]=d1use1demo.cloudfront.net [eu-west-1]=d2euw1demo.cloudfront.net
  [ap-southeast-1]=d3apse1demo.cloudfront.net)
steering_domain=d0demo.cloudfront.net
buckets=(cvs-demo-us-east-1 cvs-demo-eu-west-1)
master_key=live/master.m3u8
steering_key=live/steering.json
table=cvs-demo-state
target="${CARGO_TARGET_DIR:-target}"
export CVS_STATE_DIR="${CVS_DEMO_STATE_DIR:-$repo/.cvs-env-demo}"
run="$CVS_STATE_DIR/demo"
logs="$CVS_STATE_DIR/logs"
stamp=$(date +%Y%m%d-%H%M%S)

step() { printf '\n== %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
step "Building what is missing"
cargo build -q --locked -p operator -p hls-sim --bin cvs-operator --bin hls-origin-sim
media=$(tests/player/make-media.sh 2)
edge-lambda/test/npm-ci.sh
# tests/player's pinned npm packages (hls.js for the page, playwright-core for the viewer), as
# tests/player/run.sh installs them.
if ! (cd tests/player && node -e '
  const deps = require("./package.json").dependencies;
  for (const [n, v] of Object.entries(deps)) {
    if (require(`./node_modules/${n}/package.json`).version !== v) process.exit(1);
  }') 2>/dev/null; then
  echo "tests/player: npm ci" >&2
  (cd tests/player && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
if [[ $viewer == auto ]]; then
  if [[ -x /usr/bin/chromium ]]; then viewer=1; else
    viewer=0
    echo "No /usr/bin/chromium: no headless viewer (tests/player/run.sh installs it)." >&2
  fi
fi

# ---------------------------------------------------------------------------------------------
pids=()
names=()
cleaning=0
cleanup() {
  local code=$?
  ((cleaning)) && return
  cleaning=1
  trap '' INT TERM
  echo >&2
  echo "Stopping the demo..." >&2
  # Newest first. TERM goes to each process only (the viewer closes its browser itself, after its
  # screenshot); whatever is left of its process group (setsid) is then killed.
  local i pid left
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  tests/env/down.sh >&2 || true
  # Anything of the demo left that carries the demo's tag (a browser the viewer started, for instance).
  for _ in 1 2 3; do
    [[ -n "${CVS_DEMO_TAG:-}" ]] || break
    left=$(grep -lzx "CVS_DEMO_TAG=$CVS_DEMO_TAG" /proc/[0-9]*/environ 2>/dev/null \
      | sed -n 's:^/proc/\([0-9]*\)/environ$:\1:p' | grep -vx "$$" || true)
    [[ -z "$left" ]] && break
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 0.2
  done
  if [[ -s "$run/viewer.jsonl" ]]; then
    local shot
    shot=$(sed -n 's/.*"artefacts":"\([^"]*\)".*/\1/p' "$run/viewer.jsonl" | tail -1)
    [[ -n "$shot" ]] && echo "Viewer artefacts (screenshot.png, requests.jsonl, console.log): $shot" >&2
  fi
  echo "Logs kept in $logs" >&2
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME COMMAND...: runs COMMAND in the background in a session of its own, output to
# $logs/demo-NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$logs/demo-$name.log" 2>&1 </dev/null &
  pids+=($!)
  names+=("$name")
}
# wait_file FILE NAME: waits up to 60 s for FILE (a ready file) to be written by process NAME.
wait_file() {
  local pid=${pids[-1]}
  for _ in $(seq 600); do
    [[ -s "$1" ]] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$2 did not start; the end of $logs/demo-$2.log:" >&2
  tail -20 "$logs/demo-$2.log" >&2
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print(eval("v"+sys.argv[2]))' "$@"; }

step "Starting the control plane, DynamoDB Local and moto ($CVS_STATE_DIR)"
env_lines=$(tests/env/up.sh)
eval "$env_lines"
# Every process the demo starts from here on (and their children, such as Chromium) carries this
# variable, so the cleanup finds them all, and only them (the environment has tags of its own).
export CVS_DEMO_TAG="demo@$CVS_STATE_DIR"
mkdir -p "$run" "$logs"
rm -f "$run"/*.json "$run"/*.jsonl

# ---------------------------------------------------------------------------------------------
step "Starting the live event (hls-origin-sim, 3 regions, real media, 2 s segments)"
start origin "$target/debug/hls-origin-sim" --regions "$(IFS=,; echo "${regions[*]}")" \
  --streams 1 --renditions 3 --target-duration 2 --media "$media" --segment-format ts \
  --align-streams --threads 2 --ready-file "$run/origin.json"
wait_file "$run/origin.json" origin
control=$(json "$run/origin.json" "['control']")
declare -A origin edge
for r in "${regions[@]}"; do origin[$r]=$(json "$run/origin.json" "['regions']['$r']"); done

step "Creating the SNS topic, the S3 buckets and the copilot's role in moto"
auth() { echo "Authorization: AWS4-HMAC-SHA256 Credential=$AWS_ACCESS_KEY_ID/20260101/$1/$2/aws4_request, SignedHeaders=host, Signature=0"; }
topic=$(curl -sf -XPOST "$AWS_ENDPOINT_URL_SNS/" -d "Action=CreateTopic&Name=cvs-demo" \
  -H "$(auth us-east-1 sns)" | sed -n 's:.*<TopicArn>\(.*\)</TopicArn>.*:\1:p')
[[ "$topic" == arn:aws:sns:us-east-1:123456789012:cvs-demo ]] \
  || { echo "could not create the SNS topic of manifests/demo.yaml in moto (got '$topic')" >&2; exit 1; }
# Both in moto's default region, as the e2e tests make them; the operator writes each target with
# a client in the target's region.
for b in "${buckets[@]}"; do
  code=$(curl -s -o "$run/bucket.out" -w '%{http_code}' -XPUT "$AWS_ENDPOINT_URL_S3/$b" -H "$(auth us-east-1 s3)")
  [[ $code == 200 ]] || grep -q BucketAlreadyOwnedByYou "$run/bucket.out" \
    || { echo "could not create bucket $b in moto ($code): $(cat "$run/bucket.out")" >&2; exit 1; }
  # Anyone may read the objects, as CloudFront does through its origin access control; the page
  # server and the timeline read them without signing.
  policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::'"$b"'/*"}]}'
  curl -sf -o /dev/null -XPUT "$AWS_ENDPOINT_URL_S3/$b?policy" -H "$(auth us-east-1 s3)" \
    -H 'Content-Type: application/json' --data-binary "$policy" \
    || { echo "could not set the read policy of bucket $b in moto" >&2; exit 1; }
done

# The copilot's execution role (moto's CreateFunction wants it to exist), as manifests/demo.yaml
# names it.
code=$(curl -s -o "$run/role.out" -w '%{http_code}' -XPOST "$AWS_ENDPOINT_URL_IAM/" -H "$(auth us-east-1 iam)" \
  --data-urlencode Action=CreateRole --data-urlencode Version=2010-05-08 --data-urlencode RoleName=cvs-demo-copilot \
  --data-urlencode 'AssumeRolePolicyDocument={"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","edgelambda.amazonaws.com"]},"Action":"sts:AssumeRole"}]}')
[[ $code == 200 ]] || grep -q EntityAlreadyExists "$run/role.out" \
  || { echo "could not create the copilot's role in moto ($code): $(cat "$run/role.out")" >&2; exit 1; }

step "Applying the CRDs and manifests/demo.yaml to namespace $ns"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/clusteredstreams.cvs.dev crd/streaminstances.cvs.dev >/dev/null
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
sed -e "s|\${ORIGIN_US_EAST_1}|${origin[us-east-1]}|g" -e "s|\${ORIGIN_EU_WEST_1}|${origin[eu-west-1]}|g" \
  -e "s|\${ORIGIN_AP_SOUTHEAST_1}|${origin[ap-southeast-1]}|g" manifests/demo.yaml >"$run/demo.yaml"
kubectl apply -n "$ns" -f "$run/demo.yaml" >&2
# Who may close a region from the dashboard is the cluster's RBAC: a ServiceAccount allowed to patch
# the demo's StreamInstances (its token signs in: kubectl create token cvs-dashboard-operator -n NS).
kubectl apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: cvs-dashboard-operator}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cvs-dashboard-operator}
rules:
  - apiGroups: [cvs.dev]
    resources: [clusteredstreams, streaminstances]
    verbs: [get, list, watch]
  - apiGroups: [cvs.dev]
    resources: [streaminstances]
    verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: cvs-dashboard-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cvs-dashboard-operator}
subjects:
  - {kind: ServiceAccount, name: cvs-dashboard-operator, namespace: $ns}
YAML

step "Starting the operator"
# Its Lambda requests go through lambda-capture.mjs, which keeps the zips it deploys (moto keeps
# them but does not give them back); everything else reaches moto directly.
captured="$CVS_STATE_DIR/copilot-zips"
rm -rf "$captured"
start lambda-capture node tests/demo/lambda-capture.mjs --upstream "$AWS_ENDPOINT_URL_LAMBDA" \
  --dir "$captured" --ready-file "$run/lambda-capture.json"
wait_file "$run/lambda-capture.json" lambda-capture
op_port=$(free_port)
operator_url="http://127.0.0.1:$op_port"
dash_port=$(free_port)
dashboard_url="http://127.0.0.1:$dash_port/"
# The origins are on loopback, which the probe refuses unless told.
start operator env AWS_ENDPOINT_URL_LAMBDA="$(json "$run/lambda-capture.json" "['url']")" \
  "$target/debug/cvs-operator" run --namespace "$ns" --listen "127.0.0.1:$op_port" \
  --dashboard-addr "127.0.0.1:$dash_port" --allow-private-origins
op_pid=${pids[-1]}
for _ in $(seq 300); do
  curl -sf "$operator_url/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || break
  sleep 0.2
done
curl -sf "$operator_url/readyz" >/dev/null || { echo "the operator is not ready:" >&2; tail -20 "$logs/demo-operator.log" >&2; exit 1; }

step "Waiting for the operator to publish the merged master"
for _ in $(seq 600); do
  curl -sf -o /dev/null "$AWS_ENDPOINT_URL_S3/${buckets[0]}/$master_key" && break
  kill -0 "$op_pid" 2>/dev/null || break
  sleep 0.2
done
curl -sf -o /dev/null "$AWS_ENDPOINT_URL_S3/${buckets[0]}/$master_key" \
  || { echo "no master published within 2 minutes; kubectl get cstream -n $ns -o yaml says why" >&2; exit 1; }

step "Starting one edge per region with the copilot the operator deployed (viewer-request)"
# The operator publishes the copilot (edge-lambda/bundle/ plus the config.json it bakes from the
# ClusteredStream's spec) as a Lambda version in moto; the edges run that very zip (the one sent
# whose SHA-256 is the version's CodeSha256).
arn=""
for _ in $(seq 600); do
  arn=$(kubectl get clusteredstream "$cluster" -n "$ns" \
    -o jsonpath='{.status.conditions[?(@.type=="EdgeDeployed")].status} {.status.conditions[?(@.type=="EdgeDeployed")].message}' 2>/dev/null \
    | sed -n 's/^True \([^ ]*\) .*/\1/p')
  [[ -n "$arn" ]] && break
  kill -0 "$op_pid" 2>/dev/null || break
  sleep 0.2
done
[[ -n "$arn" ]] || { echo "the operator did not deploy the copilot within 2 minutes; kubectl get cstream -n $ns -o yaml says why" >&2; exit 1; }
copilot="$CVS_STATE_DIR/copilot"
tests/demo/deployed-copilot.py "$arn" "$captured" "$copilot" >"$run/copilot.json"
ln -s "$repo/edge-lambda/node_modules" "$copilot/node_modules"
echo "copilot $arn: $(json "$run/copilot.json" "['config']")" >&2
for r in "${regions[@]}"; do
  # AWS_REGION is the edge's region, as in a Lambda@Edge replica; the credentials and
  # AWS_ENDPOINT_URL_DYNAMODB (DynamoDB Local) come from tests/env.
  start "edge-$r" env AWS_REGION="$r" node tests/player/edge.mjs --origin "${origin[$r]}" \
    --domain "${domain[$r]}" --handler "$copilot/index.js" --event-type viewer-request \
    --ready-file "$run/edge-$r.json"
  wait_file "$run/edge-$r.json" "edge-$r"
  edge[$r]=$(json "$run/edge-$r.json" "['url']")
done

step "Starting the player page server"
page_port=$(free_port)
page="http://127.0.0.1:$page_port"
maps=(--map "$steering_domain=$page")
for r in "${regions[@]}"; do maps+=(--map "${domain[$r]}=${edge[$r]}"); done
s3_master="$AWS_ENDPOINT_URL_S3/${buckets[0]}/$master_key"
start page node tests/player/serve.mjs --master "$s3_master" \
  --steering "$AWS_ENDPOINT_URL_S3/${buckets[0]}/$steering_key" --port "$page_port" "${maps[@]}"
for _ in $(seq 100); do grep -q '"page"' "$logs/demo-page.log" 2>/dev/null && break; sleep 0.1; done
page_url=$(sed -n 's/.*"page":"\([^"]*\)".*/\1/p' "$logs/demo-page.log" | head -1)
[[ -n "$page_url" ]] || { echo "the page server did not start:" >&2; tail -20 "$logs/demo-page.log" >&2; exit 1; }

viewer_log=""
if ((viewer)); then
  step "Starting a headless viewer (hls.js in Chromium)"
  mkdir -p "$target/demo"
  viewer_args=()
  for r in "${regions[@]}"; do viewer_args+=(--region "$r=${edge[$r]}"); done
  viewer_log="$run/viewer.jsonl"
  # Its JSON lines (region switches, stalls, errors) go to viewer.jsonl; its own log to the log dir.
  start viewer bash -c 'exec node tests/player/watch.mjs "$@" >"$0"' "$viewer_log" \
    --master "$page/live/master.m3u8" --page "$page" --out "$repo/$target/demo/viewer-$stamp" "${viewer_args[@]}"
fi

cat >&2 <<TXT

================================================================================================
The demo is running (namespace '$ns', ClusteredStream '$cluster', manifests/demo.yaml).

  Player page (plays the merged master from S3 through the local edges; open it in a browser
  on this machine):
    $page_url
  Published master and steering manifest (moto S3; the page proxies them):
    $s3_master
    $AWS_ENDPOINT_URL_S3/${buckets[0]}/$steering_key
  Dashboard (sign in with a Kubernetes token; this one may close and open the demo's regions):
    $dashboard_url
    kubectl create token cvs-dashboard-operator -n $ns
  Steering manifest served by the operator:  $operator_url/steering/$ns/$cluster.json
  Metrics:                                   $operator_url/metrics

  export KUBECONFIG=$KUBECONFIG     (or: source $CVS_STATE_DIR/env.sh)
  kubectl get cvs -n $ns -w
  kubectl describe streaminstance $cluster-us-east-1 -n $ns
  kubectl patch streaminstance $cluster-eu-west-1 -n $ns --type merge -p '{"spec":{"distroOpen":false}}'
  curl -s $operator_url/metrics | grep ^cvs_

  Simulator control (faults):  curl -s -XPOST $control/faults -d '{"kind":"freeze","region":"us-east-1"}'
                               curl -s -XDELETE $control/faults
  Edges (copilot on viewer-request):  $(for r in "${regions[@]}"; do printf '%s=%s ' "$r" "${edge[$r]}"; done)
  Logs: $logs/demo-{operator,origin,edge-*,page,viewer}.log (and the environment's)
================================================================================================
TXT

# Written whole, then renamed: its presence says the chain is up (tests/player/test/chain.test.mjs).
cat >"$run/demo.json.tmp" <<JSON
{"namespace": "$ns", "cluster": "$cluster", "controlUrl": "$control", "operatorUrl": "$operator_url",
 "dashboardUrl": "$dashboard_url", "dashboardServiceAccount": "cvs-dashboard-operator",
 "s3Endpoint": "$AWS_ENDPOINT_URL_S3", "buckets": ["${buckets[0]}", "${buckets[1]}"],
 "masterKey": "$master_key", "steeringKey": "$steering_key", "table": "$table",
 "kubectl": "$(command -v kubectl)", "kubeconfig": "$KUBECONFIG", "dynamodbEndpoint": "$AWS_ENDPOINT_URL_DYNAMODB",
 "viewerLog": $([[ -n $viewer_log ]] && echo "\"$viewer_log\"" || echo null),
 "timelineFile": "$run/timeline.txt", "page": "$page", "operatorLog": "$logs/demo-operator.log",
 "instances": [$(sep=""; for r in "${regions[@]}"; do
   printf '%s{"name": "%s-%s", "region": "%s", "domain": "%s", "edge": "%s"}' "$sep" "$cluster" "$r" "$r" "${domain[$r]}" "${edge[$r]}"; sep=", "; done)]}
JSON
mv "$run/demo.json.tmp" "$run/demo.json"

status=0
if ((script)); then
  step "Scripted failure: freeze a region, watch the system react, heal it"
  node --no-warnings tests/demo/failure.mjs "$run/demo.json" ${region:+--region "$region"} &
  fpid=$!
  wait "$fpid" || status=$?
  if ((exit_after)); then exit "$status"; fi
fi
echo >&2
echo "Running until Ctrl-C (the operator's log: $logs/demo-operator.log)." >&2
# Waits in the background so Ctrl-C and TERM are handled at once.
while kill -0 "$op_pid" 2>/dev/null; do
  sleep 1 &
  wait $! || true
done
echo "The operator exited; see $logs/demo-operator.log. Stopping." >&2
exit 1
