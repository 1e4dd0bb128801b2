#!/usr/bin/env python3
"""Writes strict JSON schemas in kubeconform's layout (<kind>-<group prefix>-<version>.json,
lower case) from

  --swagger FILE  Kubernetes' OpenAPI v2 document (api/openapi-spec/swagger.json of the
                  k8s.io/kubernetes module): one schema per kind, holding only the definitions
                  it references;
  --crds FILE     a multi-document YAML stream of CustomResourceDefinitions: one schema per
                  kind and served version, from its openAPIV3Schema.

"Strict" as kubeconform's own -strict schemas are: an object with listed properties and no
additionalProperties refuses unknown keys. int-or-string and quantities accept both forms, as
the API server does. Standard library plus PyYAML only when --crds is given.
"""

import argparse
import copy
import json
import os
import sys

INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}
QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def file_name(group, version, kind):
    prefix = group.split(".")[0] if group else ""
    suffix = f"-{prefix}-{version}" if prefix else f"-{version}"
    return f"{kind.lower()}{suffix.lower()}.json"


def strict(node):
    """Recursively: objects with properties refuse unknown keys; int-or-string accepts both.
    `node` is a schema; the values of `properties`, `patternProperties` and `definitions` are
    schemas, the maps themselves are not (JSONSchemaProps has properties named `format`,
    `oneOf` and `x-kubernetes-int-or-string`)."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions") and isinstance(value, dict):
            out[key] = {name: strict(s) for name, s in value.items()}
        elif isinstance(value, (dict, list)):
            out[key] = strict(value)
        else:
            out[key] = value
    node = out
    if node.get("format") == "int-or-string" or node.pop("x-kubernetes-int-or-string", None) is True:
        rest = {k: v for k, v in node.items() if k not in ("type", "format", "anyOf", "oneOf")}
        node = {**rest, **copy.deepcopy(INT_OR_STRING)}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and node.get("x-kubernetes-preserve-unknown-fields") is not True
    ):
        node["additionalProperties"] = False
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


def refs(node, found):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref[len("#/definitions/"):])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def from_swagger(path, out):
    with open(path) as f:
        definitions = json.load(f)["definitions"]
    definitions = {name: strict(d) for name, d in definitions.items()}
    definitions[QUANTITY_DEF] = copy.deepcopy(QUANTITY)
    written = 0
    for name, d in definitions.items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            closure, todo = set(), [name]
            while todo:
                n = todo.pop()
                if n in closure:
                    continue
                closure.add(n)
                found = set()
                refs(definitions[n], found)
                todo.extend(found - closure)
            schema = {
                "$ref": f"#/definitions/{name}",
                "definitions": {n: definitions[n] for n in sorted(closure)},
            }
            target = os.path.join(out, file_name(gvk["group"], gvk["version"], gvk["kind"]))
            with open(target, "w") as f:
                json.dump(schema, f)
            written += 1
    return written


def from_crds(path, out):
    import yaml

    written = 0
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # The API server adds these to every kind; generated schemas often omit them.
                props = schema.setdefault("properties", {})
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                props.setdefault("metadata", {"type": "object"})
                schema = strict(schema)
                target = os.path.join(
                    out, file_name(spec["group"], version["name"], spec["names"]["kind"])
                )
                with open(target, "w") as f:
                    json.dump(schema, f)
                written += 1
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swagger")
    parser.add_argument("--crds", action="append", default=[])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    n = from_swagger(args.swagger, args.out) if args.swagger else 0
    for crds in args.crds:
        n += from_crds(crds, args.out)
    if n == 0:
        sys.exit("no schema written")
    print(f"{n} schemas written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
