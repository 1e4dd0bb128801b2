#!/usr/bin/env python3
"""Runs each Argo CD health check on the sample objects, as Argo CD does: the object in the
global `obj` (a Lua table made from its JSON; null fields are absent), the script's returned
table read as {status, message}. Prints one line per sample and interpreter, then
'N passed, N failed'. Exits non-zero when a result differs from the expected one."""

import argparse
import os
import subprocess
import sys

import yaml


def lua_literal(value):
    if value is None:
        return "nil"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        out = []
        for byte in value.encode("utf-8"):
            c = chr(byte)
            if c in "\\\"":
                out.append("\\" + c)
            elif 32 <= byte < 127:
                out.append(c)
            else:
                out.append("\\%03d" % byte)  # decimal escapes: Lua 5.1 has no \x or \u
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(
            "[" + lua_literal(k) + "] = " + lua_literal(v) for k, v in value.items() if v is not None
        ) + "}"
    raise TypeError(f"cannot write {type(value)} as Lua")


DRIVER = """
obj = {obj}
local hs = dofile({script})
if type(hs) ~= "table" then error("the script returned " .. type(hs) .. ", not a table") end
io.write(tostring(hs.status), "\\0", tostring(hs.message))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--health-dir", required=True)
    parser.add_argument("--samples", required=True)
    parser.add_argument("interpreters", nargs="+")
    args = parser.parse_args()
    with open(args.samples) as f:
        samples = yaml.safe_load(f)
    passed = failed = 0
    seen = set()
    for interpreter in args.interpreters:
        for s in samples:
            script = os.path.join(args.health_dir, s["script"] + ".lua")
            seen.add((s["script"], s["expect"]["status"]))
            program = DRIVER.format(obj=lua_literal(s["object"]), script=lua_literal(script))
            run = subprocess.run([interpreter, "-"], input=program.encode(), capture_output=True)
            got = run.stdout.decode("utf-8", "replace").split("\0")
            want = [s["expect"]["status"], s["expect"]["message"]]
            label = f"{interpreter} {s['script']}: {s['name']}"
            if run.returncode == 0 and got == want:
                passed += 1
                print(f"ok   {label}: {got[0]}")
            else:
                failed += 1
                print(f"FAIL {label}\n     want {want}\n     got  {got} {run.stderr.decode().strip()}")
    # Every health of each script is exercised.
    for script in ("streaminstance", "clusteredstream"):
        for health in ("Healthy", "Progressing", "Degraded"):
            if (script, health) not in seen:
                failed += 1
                print(f"FAIL no sample of {script} expects {health}")
    # The keys argocd-cm gets (manifests/argocd/kustomization.yaml) name these scripts, under the
    # key format Argo CD reads: resource.customizations.health.<group>_<kind>.
    with open(os.path.join(args.health_dir, "..", "kustomization.yaml")) as f:
        generator = yaml.safe_load(f)["configMapGenerator"][0]
    files = dict(entry.split("=", 1) for entry in generator["files"])
    for kind, script in (("ClusteredStream", "clusteredstream"), ("StreamInstance", "streaminstance")):
        key = f"resource.customizations.health.cvs.dev_{kind}"
        if generator["name"] == "argocd-cm" and files.get(key) == f"health/{script}.lua":
            passed += 1
            print(f"ok   argocd-cm key {key} is health/{script}.lua")
        else:
            failed += 1
            print(f"FAIL argocd-cm key {key} is {files.get(key)!r}, not health/{script}.lua")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
