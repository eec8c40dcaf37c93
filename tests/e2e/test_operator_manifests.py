"""The kubernetes source in the running operator: Google's Online Boutique manifests applied
with kubectl, the edges they imply in the snapshot with their evidence, and a changed
Deployment changing the graph."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.e2e.test_operator_support import (
    condition,
    edges_of,
    graph,
    install,
    snapshot_document,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.real_manifests import ONLINE_BOUTIQUE_EDGES, real_manifest

SOURCES = [{"name": "manifests", "type": "kubernetes", "interval": "1m"}]


def sources_status(api: Api) -> dict[str, dict[str, Any]]:
    status = api.kubectl.get("servicegraph", "shop", "-n", "shop").get("status") or {}
    return {entry["name"]: entry for entry in status.get("sources") or []}


def test_online_boutique_manifests_make_the_graph(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    boutique = real_manifest("online-boutique/kubernetes-manifests.yaml")
    install(api, "shop")
    api.kubectl("apply", "-n", "shop", "-f", str(boutique))
    api.kubectl.apply(graph("shop", sources=SOURCES))
    start_operator("--watch-manifests")

    wait_for(
        lambda: edges_of(snapshot_document(api, "shop-graph")) == ONLINE_BOUTIQUE_EDGES, timeout=60
    )
    doc = snapshot_document(api, "shop-graph")
    checkout = next(
        e for e in doc["edges"] if (e["source"], e["target"]) == ("checkoutservice", "emailservice")
    )
    (sighting,) = checkout["sources"]
    assert (sighting["kind"], sighting["name"], sighting["confidence"]) == (
        "kubernetes",
        "manifests",
        0.5,
    )
    assert checkout["confidence"] == 0.5 and not checkout["declared"] and checkout["observed"]
    assert sighting["evidence"] == [
        {
            "kind": "Deployment",
            "name": "checkoutservice",
            "namespace": "shop",
            "container": "server",
            "field": "env[EMAIL_SERVICE_ADDR]",
            "value": "emailservice:5000",
        }
    ]
    (manifests,) = doc["sources"]
    assert manifests["unresolvedCount"] == 1
    (unresolved,) = manifests["unresolved"]
    assert (unresolved["source"], unresolved["reference"]) == (
        "frontend",
        "shoppingassistantservice:80",
    )
    state = sources_status(api)["manifests"]
    assert (state["type"], state["healthy"], state["edges"], state["unresolved"]) == (
        "kubernetes",
        True,
        16,
        1,
    )
    healthy = condition(api.kubectl.get("sg", "shop", "-n", "shop"), "ObservedSourceHealthy")
    assert (healthy["status"], healthy["reason"]) == ("True", "Inferred")

    # checkoutservice stops naming emailservice: its edge goes with the next recomputation.
    deployment = api.kubectl.get("deployment", "checkoutservice", "-n", "shop")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["env"] = [e for e in container["env"] if e["name"] != "EMAIL_SERVICE_ADDR"]
    patch = {"spec": {"template": {"spec": {"containers": [container]}}}}
    api.kubectl(
        "patch",
        "deployment",
        "checkoutservice",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    wait_for(
        lambda: (
            edges_of(snapshot_document(api, "shop-graph"))
            == ONLINE_BOUTIQUE_EDGES - {("checkoutservice", "emailservice")}
        ),
        timeout=30,
    )


def test_without_watching_manifests_the_source_says_why(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop", sources=SOURCES))
    start_operator()
    wait_for(lambda: sources_status(api).get("manifests", {}).get("healthy") is False, timeout=60)
    state = sources_status(api)["manifests"]
    assert state["reason"] == "NotWatched"
    assert "--watch-manifests" in state["lastError"]
