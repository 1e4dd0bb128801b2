#!/usr/bin/env bash
# Packs a static Linux binary into an OCI image from scratch, without a container engine, and
# writes it as an OCI archive (a tar of an OCI image layout, what `skopeo copy oci-archive:...`,
# `podman load` and `docker load` read).
#
#   image/pack.sh --binary PATH --out FILE.oci.tar [--version V] [--revision R]
#
# The image holds the binary as /cvs-operator, the CA bundle of this machine
# (/etc/ssl/certs/ca-certificates.crt, from Debian's ca-certificates: the operator trusts the
# system's roots for AWS and origins) and /etc/passwd and /etc/group naming user 65532
# (nonroot). Config: entrypoint /cvs-operator, cmd run, user 65532:65532, SSL_CERT_FILE, and the
# org.opencontainers.image.* labels. crane (go-containerregistry, built from its Go module and
# cached) builds it against a registry of its own on loopback, which this script starts and stops.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
binary="" out="" version="" revision=""
while (($#)); do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --revision) revision="$2"; shift 2 ;;
    *) echo "usage: image/pack.sh --binary PATH --out FILE [--version V] [--revision R]" >&2; exit 2 ;;
  esac
done
[[ -f "$binary" && -n "$out" ]] || { echo "image/pack.sh: --binary (an existing file) and --out are required" >&2; exit 2; }
version="${version:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)}"
revision="${revision:-$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)}"
source_url="$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)"
licenses="$(sed -n 's/^license = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)"
# Reproducible: every file and the image's creation time are the commit's time.
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}"
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)"
ca_bundle="${CVS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -s "$ca_bundle" ]] || { echo "image/pack.sh: no CA bundle at $ca_bundle (install Debian's ca-certificates)" >&2; exit 1; }
if readelf -l "$binary" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  echo "image/pack.sh: $binary is dynamically linked; an image from scratch needs a static binary (the musl target)" >&2
  exit 1
fi

crane="$("$root/tests/env/build-go-tool.sh" crane)"
work="$(mktemp -d)"
registry_pid=""
cleanup() {
  if [[ -n "$registry_pid" ]]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The one layer, with fixed owners, modes and times.
python3 - "$binary" "$ca_bundle" "$epoch" "$work/layer.tar" <<'PY'
import io, sys, tarfile
binary, ca, epoch, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def info(name, mode, kind=tarfile.REGTYPE, size=0):
    t = tarfile.TarInfo(name); t.mode = mode; t.type = kind; t.size = size
    t.mtime = epoch; t.uid = t.gid = 0; t.uname = t.gname = ""
    return t
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
    for d in ("etc", "etc/ssl", "etc/ssl/certs"):
        tar.addfile(info(d, 0o755, tarfile.DIRTYPE))
    files = [
        ("cvs-operator", 0o755, open(binary, "rb").read()),
        ("etc/group", 0o644, b"root:x:0:\nnonroot:x:65532:\n"),
        ("etc/passwd", 0o644, b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
        ("etc/ssl/certs/ca-certificates.crt", 0o644, open(ca, "rb").read()),
    ]
    for name, mode, data in files:
        tar.addfile(info(name, mode, size=len(data)), io.BytesIO(data))
PY

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry.log" >&2; exit 1; }
  sleep 0.1
done
ref="127.0.0.1:$port/cvs-operator"

# crane's progress goes to a log, shown only when a step fails.
quiet() { "$@" >"$work/crane.log" 2>&1 || { cat "$work/crane.log" >&2; return 1; }; }
quiet "$crane" append --oci-empty-base --platform linux/amd64 -f "$work/layer.tar" -t "$ref:layer"
quiet "$crane" mutate "$ref:layer" -t "$ref:$version" \
  --set-platform linux/amd64 \
  --entrypoint /cvs-operator --cmd run \
  --user 65532:65532 --workdir / \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  -l org.opencontainers.image.title=cvs-operator \
  -l "org.opencontainers.image.description=Kubernetes operator that keeps a multi-region live HLS event on air" \
  -l "org.opencontainers.image.version=$version" \
  -l "org.opencontainers.image.revision=$revision" \
  -l "org.opencontainers.image.source=$source_url" \
  -l "org.opencontainers.image.url=$source_url" \
  -l "org.opencontainers.image.licenses=$licenses" \
  -l "org.opencontainers.image.created=$created" \
  -a "org.opencontainers.image.version=$version" \
  -a "org.opencontainers.image.revision=$revision" \
  -a "org.opencontainers.image.source=$source_url"
quiet "$crane" pull --format oci "$ref:$version" "$work/layout"

# An OCI archive: the layout as a tar, entries sorted, with fixed times and owners.
mkdir -p "$(dirname "$out")"
python3 - "$work/layout" "$out" "$epoch" "$ref:$version" "$version" <<'PY'
import json, os, sys, tarfile
layout, out, epoch, ref, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
# Name the image in the index as skopeo and podman expect (org.opencontainers.image.ref.name).
index_path = os.path.join(layout, "index.json")
index = json.load(open(index_path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = version
json.dump(index, open(index_path, "w"), separators=(",", ":"))
tmp = out + ".tmp"
with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
    paths = []
    for d, dirs, files in os.walk(layout):
        dirs.sort()
        for name in sorted(dirs + files):
            paths.append(os.path.join(d, name))
    for p in sorted(paths, key=lambda p: os.path.relpath(p, layout)):
        t = tar.gettarinfo(p, os.path.relpath(p, layout))
        t.mtime = epoch; t.uid = t.gid = 0; t.uname = t.gname = ""
        t.mode = 0o755 if t.isdir() else 0o644
        if t.isdir():
            tar.addfile(t)
        else:
            with open(p, "rb") as f:
                tar.addfile(t, f)
os.replace(tmp, out)
PY
echo "$out"
