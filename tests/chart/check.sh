#!/usr/bin/env bash
# Checks the Helm chart without a cluster (`make chart-lint`):
#   1. `helm lint --strict` with the default values and with values-all.yaml (every option on);
#   2. helm refuses wrong values (values.schema.json, and the chart's own consistency checks);
#   3. what the defaults render: 2 replicas, leader election, PodDisruptionBudget, anti-affinity;
#   4. `helm template | kubeconform -strict` for both value sets, the CRDs included, and the
#      example event in manifests/event/, against schemas made here: Kubernetes' own from the
#      OpenAPI document of the kube-apiserver the e2e tests run (k8s.io/kubernetes module, cached),
#      ours from crds/cvs.dev.yaml (made fresh on every run), and minimal ServiceMonitor and
#      PrometheusRule schemas kept in tests/chart/schemas/ (the fields the chart writes).
# helm and kubeconform are built from their Go modules and cached (tests/env/build-*.sh).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
chart="$root/charts/cvs-operator"
here="$root/tests/chart"
helm="$("$root/tests/env/build-helm.sh")"
kubeconform="$("$root/tests/env/build-go-tool.sh" kubeconform)"
kube_version="$(sed -n 's/^KUBE_VERSION="${CVS_KUBE_VERSION:-\(v[0-9.]*\)}"$/\1/p' "$root/tests/env/build-binaries.sh")"
[[ -n "$kube_version" ]] || { echo "cannot read KUBE_VERSION from tests/env/build-binaries.sh" >&2; exit 1; }

cache="${CVS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cvs-operator}/kubeconform-schemas/kubernetes-$kube_version"
if [[ ! -f "$cache/.done" ]]; then
  echo "[chart] making Kubernetes $kube_version JSON schemas (once)" >&2
  mod_dir="$(cd /tmp && GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS=-mod=mod \
    go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -f "$mod_dir/api/openapi-spec/swagger.json" ]] || { echo "no swagger.json in k8s.io/kubernetes@$kube_version" >&2; exit 1; }
  rm -rf "$cache"
  python3 "$here/openapi2jsonschema.py" --swagger "$mod_dir/api/openapi-spec/swagger.json" --out "$cache"
  touch "$cache/.done"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$here/openapi2jsonschema.py" --crds "$root/crds/cvs.dev.yaml" --out "$work/schemas"
cp "$here"/schemas/*.json "$work/schemas/"

failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# 1. lint
for values in "" "$here/values-all.yaml"; do
  if "$helm" lint --strict "$chart" ${values:+-f "$values"} >"$work/lint.log" 2>&1; then
    pass "helm lint --strict ${values:+-f ${values#"$root/"}}"
  else
    cat "$work/lint.log"; fail "helm lint --strict ${values:+-f ${values#"$root/"}}"
  fi
done

# 2. wrong values are refused, each with a message naming what is wrong
refused() {
  local expect="$1"; shift
  if "$helm" template cvs "$chart" "$@" >"$work/out" 2>"$work/err"; then
    fail "helm accepted $*"
  elif grep -qF -- "$expect" "$work/err"; then
    pass "helm refuses $* ($expect)"
  else
    cat "$work/err"; fail "helm refused $* without naming '$expect'"
  fi
}
refused "/replicaCount" --set replicaCount=two
refused "/image/pullPolicy" --set image.pullPolicy=Sometimes
refused "/image/digest" --set image.digest=latest
refused "replicaCounts" --set replicaCounts=2
refused "/probe/timeout" --set-string probe.timeout=4
refused "/probe/maxBackoff" --set probe.maxBackoff=30
refused "/leaderElection/leaseDurationSeconds" --set leaderElection.leaseDurationSeconds=1
refused "/leaderElection/leaseName" --set leaderElection.leaseName=Not_A_Name
refused "/podAntiAffinity" --set podAntiAffinity=maybe
refused "/metrics/port" --set metrics.port=70000
refused "/log/format" --set log.format=xml
refused "/aws/endpoints/dynamodb" --set aws.endpoints.dynamodb=ftp://dynamodb
refused "/aws/region" --set aws.region=Europe
refused "/podDisruptionBudget/maxUnavailable" --set-string podDisruptionBudget.maxUnavailable=one
refused "/watchNamespace" --set watchNamespace=Live_Events
refused "/prometheusRule/for/noLeader" --set prometheusRule.for.noLeader=soon
refused "/extraArgs/0" --set 'extraArgs[0]=run'
refused "must be longer than leaderElection.leaseDurationSeconds" --set terminationGracePeriodSeconds=15
refused "needs leaderElection.enabled" --set leaderElection.enabled=false
refused "/dashboard/port" --set dashboard.enabled=true --set dashboard.port=0
refused "/dashboard/anonymousRead" --set dashboard.anonymousRead=yes
refused "/dashboard/secureCookie" --set dashboard.secureCookie=on
refused "/dashboard/service/type" --set dashboard.service.type=ExternalName
refused "needs metrics.service.enabled" --set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false

# 3. what the defaults render
"$helm" template cvs "$chart" --namespace cvs-system >"$work/default.yaml"
expect() {
  local what="$1" file="$2"; shift 2
  if grep -qE -- "$1" "$file"; then pass "$what"; else fail "$what: no line matching '$1' in $(basename "$file")"; fi
}
absent() {
  local what="$1" file="$2"; shift 2
  if grep -qE -- "$1" "$file"; then fail "$what: '$1' found in $(basename "$file")"; else pass "$what"; fi
}
d="$work/default.yaml"
expect "defaults: 2 replicas" "$d" '^  replicas: 2$'
expect "defaults: leader election on" "$d" '^            - --leader-election$'
expect "defaults: Lease namespace from the downward API" "$d" '^            - --leader-election-namespace=\$\(POD_NAMESPACE\)$'
expect "defaults: Lease holder identity from the downward API" "$d" '^            - --leader-election-identity=\$\(POD_NAME\)$'
expect "defaults: Lease name cvs-operator" "$d" '^            - --leader-election-lease-name=cvs-operator$'
expect "defaults: lease duration 15s" "$d" '^            - --lease-duration=15s$'
expect "defaults: POD_NAMESPACE set" "$d" 'fieldPath: metadata.namespace'
expect "defaults: rolling update with a surge" "$d" 'maxUnavailable: 0'
expect "defaults: PodDisruptionBudget" "$d" '^kind: PodDisruptionBudget$'
expect "defaults: preferred pod anti-affinity" "$d" 'preferredDuringSchedulingIgnoredDuringExecution'
expect "defaults: grace period 30 s" "$d" 'terminationGracePeriodSeconds: 30$'
expect "defaults: Role for leases" "$d" 'resources: \["leases"\]'
expect "defaults: leases get/create/update only" "$d" 'verbs: \["get", "create", "update"\]'
expect "defaults: read-only root file system" "$d" 'readOnlyRootFilesystem: true'
expect "defaults: all capabilities dropped" "$d" '^ +- ALL$'
expect "defaults: seccomp RuntimeDefault" "$d" 'type: RuntimeDefault'
absent "defaults: no ServiceMonitor" "$d" '^kind: ServiceMonitor$'
absent "defaults: no PrometheusRule" "$d" '^kind: PrometheusRule$'
absent "defaults: no NetworkPolicy" "$d" '^kind: NetworkPolicy$'
absent "defaults: no dashboard listener" "$d" '--dashboard-addr|http-dashboard'
absent "defaults: no TokenReview or SubjectAccessReview rights" "$d" 'tokenreviews|subjectaccessreviews'
absent "defaults: no patch of a StreamInstance's spec" "$d" '^    resources: \["streaminstances"\]$'
"$helm" template cvs "$chart" --namespace cvs-system --set dashboard.enabled=true >"$work/dash.yaml"
expect "dashboard: its own listener on the pod's addresses" "$work/dash.yaml" '^            - --dashboard-addr=0\.0\.0\.0:8090$'
absent "dashboard: anonymous read off by default" "$work/dash.yaml" 'dashboard-anonymous-read'
absent "dashboard: plain cookie by default" "$work/dash.yaml" 'dashboard-secure-cookie'
expect "dashboard: container port" "$work/dash.yaml" '^            - name: http-dashboard$'
expect "dashboard: a Service" "$work/dash.yaml" '^  name: cvs-cvs-operator-dashboard$'
expect "dashboard: a client stays on the replica holding its session" "$work/dash.yaml" '^  sessionAffinity: ClientIP$'
expect "dashboard: Service port 8090 to the container's" "$work/dash.yaml" '^      port: 8090$'
expect "dashboard: create on tokenreviews" "$work/dash.yaml" 'resources: \["tokenreviews"\]'
expect "dashboard: create on subjectaccessreviews" "$work/dash.yaml" 'resources: \["subjectaccessreviews"\]'
expect "dashboard: patch on streaminstances" "$work/dash.yaml" '^    resources: \["streaminstances"\]$'
"$helm" template cvs "$chart" --set replicaCount=1 --set leaderElection.enabled=false >"$work/single.yaml"
absent "leader election off: no leader flags" "$work/single.yaml" 'leader-election'
absent "leader election off: no lease Role" "$work/single.yaml" '"leases"'
expect "leader election off: Recreate" "$work/single.yaml" 'type: Recreate'
"$helm" template cvs "$chart" -f "$here/values-all.yaml" >"$work/all.yaml"
expect "all options: required anti-affinity" "$work/all.yaml" 'requiredDuringSchedulingIgnoredDuringExecution'
expect "all options: minAvailable wins" "$work/all.yaml" '^  minAvailable: 2$'
expect "all options: image by digest" "$work/all.yaml" 'cvs-operator@sha256:0123'
expect "all options: IRSA annotation" "$work/all.yaml" 'eks.amazonaws.com/role-arn'
expect "all options: NetworkPolicy egress" "$work/all.yaml" '^    - Egress$'
expect "all options: anonymous read" "$work/all.yaml" '^            - --dashboard-anonymous-read$'
expect "all options: Secure session cookie" "$work/all.yaml" '^            - --dashboard-secure-cookie$'
expect "all options: dashboard port 8443" "$work/all.yaml" '^            - --dashboard-addr=0\.0\.0\.0:8443$'
expect "all options: NetworkPolicy admits the dashboard" "$work/all.yaml" '^        - port: http-dashboard$'

# 4. kubeconform -strict
validate() {
  local what="$1"; shift
  if "$kubeconform" -strict -summary -kubernetes-version "${kube_version#v}" \
      -schema-location "$cache/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "$work/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      "$@" >"$work/kc.log" 2>&1; then
    pass "kubeconform -strict $what: $(tail -1 "$work/kc.log")"
  else
    cat "$work/kc.log"; fail "kubeconform -strict $what"
  fi
}
invalid() {
  local what="$1" expect="$2"; shift 2
  if "$kubeconform" -strict -schema-location "$cache/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
      -schema-location "$work/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@" >"$work/kc.log" 2>&1; then
    fail "kubeconform accepted $what"
  elif ! grep -qF -- "$expect" "$work/kc.log"; then
    cat "$work/kc.log"; fail "kubeconform refused $what without naming '$expect'"
  else
    pass "kubeconform refuses $what: $(grep -m1 -oE "at '[^']*': .*" "$work/kc.log" | cut -c1-120)"
  fi
}
# The validation can fail: a misspelt field passed through a free-form value, a misspelt field of
# our CRDs, and a misspelt field of the ServiceMonitor are each refused.
"$helm" template cvs "$chart" --set podSecurityContext.runAsUsr=1 >"$work/typo.yaml"
invalid "a misspelt pod securityContext field" "'runAsUsr' not allowed" "$work/typo.yaml"
sed 's/distroOpen: true/distroOpne: true/' "$root/manifests/example.yaml" >"$work/typo-crd.yaml"
invalid "a misspelt StreamInstance field" "'distroOpne' not allowed" "$work/typo-crd.yaml"
"$helm" template cvs "$chart" --set metrics.serviceMonitor.enabled=true \
  --set 'metrics.serviceMonitor.relabelings[0].sourceLabel=x' >"$work/typo-sm.yaml"
invalid "a misspelt ServiceMonitor relabeling field" "'sourceLabel' not allowed" "$work/typo-sm.yaml"

"$helm" template cvs "$chart" --namespace cvs-system --include-crds >"$work/default-crds.yaml"
validate "default values (with the CRDs)" "$work/default-crds.yaml"
validate "values-all.yaml" "$work/all.yaml"
validate "manifests/event" "$root"/manifests/event/clusteredstream.yaml "$root"/manifests/event/streaminstance-*.yaml

echo
if ((failures)); then echo "chart: $failures check(s) failed"; exit 1; fi
echo "chart: all checks passed"
