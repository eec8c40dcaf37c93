"""CustomResourceDefinitions generated from the pydantic models in `api.py`.

Kubernetes wants a structural OpenAPI v3 schema: no `$ref`, no `anyOf` for optional fields,
no `additionalProperties: false`. This module turns pydantic's JSON Schema into that.
"""

from __future__ import annotations

from typing import Any

import yaml

from servicegraph.api import CATEGORY, GROUP, KINDS, VERSION, ResourceKind

JsonSchema = dict[str, Any]

# Keywords a structural schema may carry (plus x-kubernetes-* extensions).
STRUCTURAL_KEYWORDS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "format",
}


def _structural(node: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        # Optional[X] is X with no default; the API server treats absence as None.
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        if node.get("default") is not None:
            rest["default"] = node["default"]
        return _structural({**variants[0], **rest}, defs)

    out: JsonSchema = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in STRUCTURAL_KEYWORDS:
            continue
        elif key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items",):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _structural(value, defs)
        elif key == "default" and value in ({}, []):
            continue  # an empty default adds nothing but noise to `kubectl get -o yaml`
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def object_schema(kind: ResourceKind) -> JsonSchema:
    """The openAPIV3Schema of one kind, rules over the whole object included."""
    raw = kind.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _structural(raw, defs)
    props = schema["properties"]
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"type": "object"}
    schema["required"] = ["spec"] if kind.kind == "ServiceGraph" else []
    if not schema["required"]:
        del schema["required"]
    if kind.object_rules:
        schema["x-kubernetes-validations"] = [dict(rule) for rule in kind.object_rules]
    return schema


def custom_resource_definition(kind: ResourceKind) -> JsonSchema:
    singular = kind.kind.lower()
    columns = [
        {
            "name": column.name,
            "type": column.type,
            "jsonPath": column.json_path,
            **({"description": column.description} if column.description else {}),
            **({"priority": column.priority} if column.priority else {}),
        }
        for column in kind.printer_columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": object_schema(kind)},
                }
            ],
        },
    }


def peering_definition(kind: str, scope: str) -> JsonSchema:
    """Kopf's peering resources: replicas of the operator elect the active one through them."""
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crds() -> dict[str, str]:
    """File name -> YAML text of every CRD, as committed under `crds/`."""
    header = "# Generated by `servicegraph crds` from operator/servicegraph/api.py; do not edit.\n"
    files = {f"{GROUP}_{kind.plural}.yaml": custom_resource_definition(kind) for kind in KINDS}
    files["kopf.dev_clusterkopfpeerings.yaml"] = peering_definition("ClusterKopfPeering", "Cluster")
    files["kopf.dev_kopfpeerings.yaml"] = peering_definition("KopfPeering", "Namespaced")
    return {
        name: header + yaml.safe_dump(crd, sort_keys=False, width=100)
        for name, crd in files.items()
    }
