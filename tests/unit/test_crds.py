"""The CRDs in crds/ are what the models generate, and what a real API server accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from servicegraph.api import KINDS
from servicegraph.crds import STRUCTURAL_KEYWORDS, custom_resource_definition, render_crds
from tests.support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    generated = render_crds()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "crds").glob("*.yaml")}
    assert committed == generated, "crds/ is out of date: run `servicegraph crds --write crds`"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_is_a_valid_kubernetes_object(kind: Any) -> None:
    kubernetes_validate.validate(custom_resource_definition(kind), "1.32.0", strict=True)


def schema_nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += schema_nodes(sub, f"{path}.{name}")
    if "items" in node:
        found += schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += schema_nodes(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: Any) -> None:
    schema = custom_resource_definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in schema_nodes(schema):
        assert "type" in node, f"{path} has no type"
        unknown = {k for k in node if not k.startswith("x-kubernetes-")} - STRUCTURAL_KEYWORDS
        assert not unknown, f"{path} carries {unknown}"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], (
                    f"{path}: list-map key {key} must be required or defaulted"
                )


def test_crd_names_and_printer_columns() -> None:
    crds = {
        c["spec"]["names"]["kind"]: c for c in (yaml.safe_load(t) for t in render_crds().values())
    }
    graph = crds["ServiceGraph"]["spec"]
    assert graph["names"]["shortNames"] == ["sg"]
    assert graph["names"]["categories"] == ["slo-engine"]
    assert crds["ServiceDependency"]["spec"]["names"]["shortNames"] == ["sdep"]
    columns = [
        c["name"] for c in graph["versions"][0]["additionalPrinterColumns"] if "priority" not in c
    ]
    assert columns == ["Services", "Edges", "Cycles", "Stale", "Drift", "Ready", "Age"]
    for kind in ("ServiceGraph", "ServiceDependency"):
        crd = crds[kind]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert crd["spec"]["scope"] == "Namespaced"


def test_kopf_peering_crds_are_shipped_for_several_replicas() -> None:
    crds = [yaml.safe_load(t) for t in render_crds().values()]
    peering = {
        c["spec"]["names"]["kind"]: c["spec"]["scope"]
        for c in crds
        if c["spec"]["group"] == "kopf.dev"
    }
    assert peering == {"ClusterKopfPeering": "Cluster", "KopfPeering": "Namespaced"}
    for crd in crds:
        kubernetes_validate.validate(crd, "1.32.0", strict=True)


def test_depends_on_is_a_list_map_keyed_by_service() -> None:
    crd = custom_resource_definition(KINDS[0])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    depends_on = spec["properties"]["dependsOn"]
    assert depends_on["x-kubernetes-list-type"] == "map"
    assert depends_on["x-kubernetes-list-map-keys"] == ["service"]


def test_the_api_reference_is_the_generated_one() -> None:
    module = load_script("api_reference")
    text = (ROOT / "docs" / "api-reference.md").read_text(encoding="utf-8")
    assert text == module.reference(), "the API changed: run `make crds`"
    # Every field of both kinds, with what bounds it.
    assert "| `dependsOn[].timeoutMs` | integer |  | 1 to 3600000 | Call timeout. |" in text
    assert '| `observed.interval` | string | `"15m"` |' in text
    assert "must be between 1s and 24h" in text
    assert "| `.spec` | at most one kubernetes source |" in text
