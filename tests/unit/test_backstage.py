"""`servicegraph export -o backstage` and `servicegraph import backstage`, as a user runs them:
the catalog Backstage reads, and drafts that `check` passes and that give the same graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_cli import API, BOUTIQUE, run


def ok(*args: str) -> str:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def graph_of(path: Path) -> tuple[list[Any], list[Any]]:
    """The nodes and edges `export -o json` draws of the manifests at `path`."""
    doc = json.loads(ok("export", "--from", str(path), "-o", "json"))
    return doc["nodes"], doc["edges"]


def round_trip(manifests: Path, folder: Path) -> Path:
    catalog = folder / "catalog-info.yaml"
    catalog.write_text(ok("export", "--from", str(manifests), "-o", "backstage"))
    drafts = folder / "drafts.yaml"
    drafts.write_text(ok("import", "backstage", str(catalog)))
    return drafts


def test_online_boutique_goes_to_backstage_and_back_unchanged(tmp_path: Path) -> None:
    drafts = round_trip(BOUTIQUE, tmp_path)
    assert ok("check", str(drafts)) == "ok: 12 services, 16 edges, no unacknowledged cycle\n"
    assert graph_of(drafts) == graph_of(BOUTIQUE)


def test_the_catalog_is_what_backstage_expects(tmp_path: Path) -> None:
    entities = list(yaml.safe_load_all(ok("export", "--from", str(BOUTIQUE), "-o", "backstage")))
    assert len(entities) == 12
    by_name = {entity["metadata"]["name"]: entity for entity in entities}
    frontend = by_name["frontend"]
    assert frontend["apiVersion"] == "backstage.io/v1alpha1"
    assert frontend["kind"] == "Component"
    assert frontend["metadata"]["namespace"] == "online-boutique"
    assert frontend["metadata"]["labels"] == {"graph.slo-engine.io/tier": "critical"}
    assert frontend["spec"]["type"] == "service"
    assert frontend["spec"]["lifecycle"] == "production"
    assert frontend["spec"]["owner"] == "group:web"
    assert "component:online-boutique/checkoutservice" in frontend["spec"]["dependsOn"]
    assert len(frontend["spec"]["dependsOn"]) == 7
    # What Backstage has no field for rides in an annotation.
    calls = json.loads(frontend["metadata"]["annotations"]["graph.slo-engine.io/depends-on"])
    assert {"service": "adservice", "criticality": "degraded"}.items() <= next(
        call for call in calls if call["service"] == "adservice"
    ).items()


def sdep(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceDependency",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }


def test_what_backstage_has_no_field_for_comes_back_too(tmp_path: Path) -> None:
    retry = {"maxRetries": 2, "backoffMs": 50, "backoffMultiplier": 1.5}
    objects = [
        sdep(
            "checkout-deps",
            {
                "service": "checkout",
                "tier": "high",
                "dependsOn": [
                    {"service": "mailer", "communicationMode": "async", "criticality": "soft"},
                    {"service": "payments", "protocol": "grpc", "timeoutMs": 300, "retry": retry},
                    {"service": "fraud-api"},  # declared by nobody
                ],
            },
        ),
        sdep("mailer", {"team": "comms"}),
        sdep("payments", {"team": "money", "dependsOn": [{"service": "ledger"}]}),
        sdep("ledger", {"team": "money"}),
    ]
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(yaml.safe_dump_all(objects))
    drafts = round_trip(manifests, tmp_path)
    assert graph_of(drafts) == graph_of(manifests)
    checkout = next(d for d in yaml.safe_load_all(drafts.read_text()) if d["spec"].get("service"))
    assert checkout["metadata"] == {"name": "checkout-deps", "namespace": "shop"}
    assert "team" not in checkout["spec"]  # no team: owner "unknown" in Backstage, none here


def test_a_hand_written_catalog_is_drafted(tmp_path: Path) -> None:
    catalog = [
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "storefront"},
            "spec": {
                "type": "website",
                "lifecycle": "production",
                "owner": "group:default/web-team",
                "dependsOn": ["component:cart", "resource:default/orders-db", "search"],
            },
        },
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"type": "service", "lifecycle": "experimental", "owner": "team-cart"},
        },
        {"apiVersion": "backstage.io/v1alpha1", "kind": "System", "metadata": {"name": "shop"}},
        {"apiVersion": "backstage.io/v1alpha1", "kind": "Group", "metadata": {"name": "web-team"}},
    ]
    (tmp_path / "catalog-info.yaml").write_text(yaml.safe_dump_all(catalog))
    drafts = list(yaml.safe_load_all(ok("import", "backstage", "-n", "web", str(tmp_path))))
    assert drafts == [
        {
            "apiVersion": API,
            "kind": "ServiceDependency",
            "metadata": {"name": "storefront", "namespace": "web"},
            "spec": {
                "team": "web-team",
                "dependsOn": [{"service": "cart"}, {"service": "orders-db"}, {"service": "search"}],
            },
        },
        {
            "apiVersion": API,
            "kind": "ServiceDependency",
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"team": "team-cart", "dependsOn": []},
        },
    ]


@pytest.mark.parametrize(
    ("component", "message"),
    [
        (
            {"metadata": {"name": "cart"}, "spec": {"owner": "user:John.Doe"}},
            'error: Component default/cart: spec.team: Invalid value: "John.Doe": should match',
        ),
        (
            {
                "metadata": {
                    "name": "cart",
                    "annotations": {"graph.slo-engine.io/depends-on": "[not json"},
                },
                "spec": {"owner": "a"},
            },
            "error: Component cart: graph.slo-engine.io/depends-on is not JSON",
        ),
        (
            {"metadata": {"name": "cart"}, "spec": {"owner": "a", "dependsOn": ["a:b:c"]}},
            "error: Component cart: 'a:b:c' in dependsOn is no entity reference",
        ),
    ],
)
def test_a_component_that_cannot_be_drafted_is_named(
    tmp_path: Path, component: dict[str, Any], message: str
) -> None:
    entity = {"apiVersion": "backstage.io/v1alpha1", "kind": "Component", **component}
    (tmp_path / "catalog-info.yaml").write_text(yaml.safe_dump(entity))
    result = run("import", "backstage", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert result.stdout == ""


def test_a_catalog_without_components_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "catalog-info.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    result = run("import", "backstage", str(tmp_path))
    assert (result.returncode, result.stderr) == (
        2,
        f"error: no Backstage Component in {tmp_path}\n",
    )
