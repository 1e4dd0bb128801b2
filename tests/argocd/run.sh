#!/usr/bin/env bash
# Runs the Argo CD health checks (manifests/argocd/health/*.lua) on every sample object in
# tests/argocd/samples.yaml, under Lua 5.1 (the dialect of gopher-lua, which Argo CD embeds) and
# Lua 5.4, and compares the health and message with the expected ones. Installs Debian's lua5.1
# and lua5.4 when missing (apt-get, non-interactive; needs root, as on the project's machines).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

missing=()
for lua in lua5.1 lua5.4; do
  command -v "$lua" >/dev/null || missing+=("$lua")
done
if ((${#missing[@]})); then
  echo "[argocd] installing ${missing[*]} (Debian packages)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }
fi

exec python3 "$root/tests/argocd/run.py" --health-dir "$root/manifests/argocd/health" \
  --samples "$root/tests/argocd/samples.yaml" lua5.1 lua5.4
