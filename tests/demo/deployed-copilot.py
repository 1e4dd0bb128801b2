#!/usr/bin/env python3
"""Extracts the copilot zip the operator deployed to moto's Lambda, so the local edges run exactly
what the operator published (the committed bundle and the config.json it baked from the
ClusteredStream), not a copy a script put together.

    tests/demo/deployed-copilot.py VERSION_ARN CAPTURE_DIR OUT_DIR

VERSION_ARN is the published version the operator reports in the ClusteredStream's EdgeDeployed
condition; GetFunction on it (moto) gives the version's CodeSha256. moto keeps the code but does
not serve it (its Code.Location is not a real URL, and its model dump needs Docker once a function
exists), so tests/demo/lambda-capture.mjs keeps every zip the operator sent to moto, in
CAPTURE_DIR; the one whose SHA-256 is that CodeSha256 is the deployed code. OUT_DIR is emptied and
receives its files. Prints {"dir", "codeSha256", "files", "config"} as JSON.

Environment: AWS_ENDPOINT_URL_LAMBDA (moto itself), AWS_ACCESS_KEY_ID.
"""

import base64
import hashlib
import io
import json
import os
import shutil
import sys
import urllib.parse
import urllib.request
import zipfile


def get(url, service):
    key = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
    # moto picks the service from the credential scope; it does not check the signature.
    auth = f"AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    req = urllib.request.Request(url, headers={"Authorization": auth})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    arn, captured, out = sys.argv[1:4]
    endpoint = os.environ["AWS_ENDPOINT_URL_LAMBDA"].rstrip("/")
    fn = json.loads(get(f"{endpoint}/2015-03-31/functions/{urllib.parse.quote(arn, safe='')}", "lambda"))
    wanted = fn["Configuration"]["CodeSha256"]
    path = os.path.join(captured, wanted.replace("+", "-").replace("/", "_") + ".zip")
    if not os.path.exists(path):
        sys.exit(f"deployed-copilot: the operator sent no zip with CodeSha256 {wanted} (looked for {path})")
    with open(path, "rb") as f:
        raw = f.read()
    if base64.b64encode(hashlib.sha256(raw).digest()).decode() != wanted:
        sys.exit(f"deployed-copilot: {path} does not hash to {wanted}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        for name in z.namelist():
            # The operator's zip is flat; refuse anything that would leave OUT_DIR.
            if os.path.isabs(name) or ".." in name.split("/"):
                sys.exit(f"deployed-copilot: unexpected path {name!r} in the zip")
        z.extractall(out)
        files = sorted(z.namelist())
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    print(json.dumps({"dir": out, "codeSha256": wanted, "files": files, "config": config}))


if __name__ == "__main__":
    main()
