"""The operator end to end: kubectl apply, the real `servicegraph run`, kubectl get."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
API = "graph.slo-engine.io/v1alpha1"
READY = '{.status.conditions[?(@.type=="Ready")].status}'


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def sdep(name: str, *targets: str, ns: str = "shop", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceDependency",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"dependsOn": [{"service": t} for t in targets]},
    }


def graph(name: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceGraph",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def jsonpath(api: Api, kind: str, name: str, path: str, ns: str = "shop") -> str:
    return api.kubectl("get", kind, name, "-n", ns, "-o", f"jsonpath={path}")


def install(api: Api) -> None:
    api.kubectl("apply", "-f", str(ROOT / "crds"))


def test_create_update_delete(api: Api, start_operator: Callable[..., OperatorProcess]) -> None:
    install(api)
    api.kubectl.apply(namespace("shop"))
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "c"))
    start_operator()
    wait_for(
        lambda: (
            jsonpath(api, "servicegraph", "shop", "{.status.services}/{.status.edges}") == "3/2"
        ),
        timeout=30,
    )
    assert jsonpath(api, "servicegraph", "shop", READY) == "True"

    api.kubectl.apply(sdep("c", "d"))
    wait_for(
        lambda: jsonpath(api, "servicegraph", "shop", "{.status.services}/{.status.edges}") == "4/3"
    )

    api.kubectl("delete", "servicedependency", "a", "-n", "shop")
    wait_for(
        lambda: jsonpath(api, "servicegraph", "shop", "{.status.services}/{.status.edges}") == "3/2"
    )
    assert jsonpath(api, "sdep", "c", "{.status.unresolvedTargets}") == '["d"]'
    assert jsonpath(api, "sdep", "b", "{.status.resolvedTargets}") == '["c"]'
