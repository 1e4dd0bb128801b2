#!/usr/bin/env python3
"""Reads an OCI archive made by image/pack.sh and checks it: the layout's blobs match their
digests; the manifest and config are OCI; the config's platform, entrypoint, cmd, user,
environment and org.opencontainers.image.* labels; the one layer's files, owners and modes; the
binary is static and runs. Prints one line per check and 'N passed, N failed'."""

import argparse
import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def elf_is_static(data):
    """True when the ELF file has no PT_INTERP program header (no dynamic loader)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return False
    endian = "<" if data[5] == 1 else ">"
    phoff, = struct.unpack_from(endian + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive")
    parser.add_argument("--version", required=True, help="expected org.opencontainers.image.version")
    parser.add_argument("--run-output", required=True, help="text `/cvs-operator --version` prints")
    args = parser.parse_args()

    results = []

    def check(what, ok, detail=""):
        results.append(ok)
        print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail else ""))
        return ok

    with tarfile.open(args.archive) as tar:
        entries = {m.name.lstrip("./"): m for m in tar.getmembers()}

        def read(name):
            return tar.extractfile(entries[name]).read()

        check("archive is an OCI image layout", json.loads(read("oci-layout")).get("imageLayoutVersion") == "1.0.0")
        bad = []
        for name in entries:
            if name.startswith("blobs/sha256/") and entries[name].isfile():
                if hashlib.sha256(read(name)).hexdigest() != name.rsplit("/", 1)[1]:
                    bad.append(name)
        check("every blob matches its digest", not bad, ", ".join(bad))

        def blob(descriptor):
            algo, digest = descriptor["digest"].split(":")
            return read(f"blobs/{algo}/{digest}")

        index = json.loads(read("index.json"))
        check("index names one image", len(index["manifests"]) == 1, str(len(index["manifests"])))
        desc = index["manifests"][0]
        check("index tags it with the version",
              desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == args.version)
        manifest = json.loads(blob(desc))
        check("manifest is OCI", manifest.get("mediaType", desc.get("mediaType")) == OCI_MANIFEST,
              manifest.get("mediaType", ""))
        check("config is OCI", manifest["config"]["mediaType"] == OCI_CONFIG, manifest["config"]["mediaType"])
        config = json.loads(blob(manifest["config"]))
        c = config.get("config", {})
        check("platform linux/amd64", (config.get("os"), config.get("architecture")) == ("linux", "amd64"),
              f"{config.get('os')}/{config.get('architecture')}")
        check("entrypoint /cvs-operator", c.get("Entrypoint") == ["/cvs-operator"], str(c.get("Entrypoint")))
        check("cmd run", c.get("Cmd") == ["run"], str(c.get("Cmd")))
        check("user 65532:65532 (non-root)", c.get("User") == "65532:65532", str(c.get("User")))
        check("SSL_CERT_FILE names the bundle", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in c.get("Env", []),
              str(c.get("Env")))
        labels = c.get("Labels") or {}
        for key in ("title", "description", "version", "revision", "source", "url", "licenses", "created"):
            name = f"org.opencontainers.image.{key}"
            check(f"label {name}", bool(labels.get(name)), labels.get(name, "missing"))
        check("label version is the expected one", labels.get("org.opencontainers.image.version") == args.version,
              labels.get("org.opencontainers.image.version", ""))
        check("label title cvs-operator", labels.get("org.opencontainers.image.title") == "cvs-operator")

        layers = manifest["layers"]
        check("one layer, gzip tar", len(layers) == 1 and layers[0]["mediaType"] == OCI_LAYER_GZIP,
              ", ".join(l["mediaType"] for l in layers))
        raw = blob(layers[0])
        check("config's diff_id is the layer's uncompressed digest",
              config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(gzip.decompress(raw)).hexdigest()])
        with tarfile.open(fileobj=io.BytesIO(raw)) as layer:
            files = {m.name.lstrip("./"): m for m in layer.getmembers()}
            expected = {"cvs-operator": 0o755, "etc/passwd": 0o644, "etc/group": 0o644,
                        "etc/ssl/certs/ca-certificates.crt": 0o644}
            for name, mode in expected.items():
                m = files.get(name)
                check(f"layer has /{name}, root-owned, mode {oct(mode)}",
                      m is not None and m.isfile() and m.mode == mode and m.uid == 0 and m.gid == 0,
                      "missing" if m is None else f"mode {oct(m.mode)} uid {m.uid}")
            passwd = layer.extractfile(files["etc/passwd"]).read().decode()
            check("/etc/passwd names user 65532", "nonroot:x:65532:65532:" in passwd)
            bundle = layer.extractfile(files["etc/ssl/certs/ca-certificates.crt"]).read()
            check("CA bundle holds certificates", bundle.count(b"BEGIN CERTIFICATE") > 10)
            binary = layer.extractfile(files["cvs-operator"]).read()
            check("binary is a static ELF (no program interpreter)", elf_is_static(binary))
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "cvs-operator")
                with open(path, "wb") as f:
                    f.write(binary)
                os.chmod(path, 0o755)
                run = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
                check(f"binary runs: --version prints {args.run_output!r}",
                      run.returncode == 0 and args.run_output in run.stdout, run.stdout.strip() + run.stderr.strip())

    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
