"""Several sources in one graph, in the running operator: each polled on its own, each
failure keeping its own edges and no other's, each named in the status and the snapshot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.test_operator_support import (
    condition,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_document,
)
from tests.support.binaries import require_binary
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.mesh_exporters import MeshExporter, istio_request, linkerd_request
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import Edge, FakePrometheus, PrometheusServer


def sources_status(api: Api) -> dict[str, dict[str, Any]]:
    status = api.kubectl.get("servicegraph", "shop", "-n", "shop").get("status") or {}
    return {entry["name"]: entry for entry in status.get("sources") or []}


def reporters(api: Api) -> dict[tuple[str, str], list[str]]:
    doc = snapshot_document(api, "shop-graph")
    return {
        (e["source"], e["target"]): [s.get("name", s["kind"]) for s in e["sources"]]
        for e in doc["edges"]
    }


def last_seen(api: Api, edge: tuple[str, str], reporter: str) -> str:
    doc = snapshot_document(api, "shop-graph")
    (found,) = [e for e in doc["edges"] if (e["source"], e["target"]) == edge]
    (sighting,) = [s for s in found["sources"] if s.get("name", s["kind"]) == reporter]
    return str(sighting["lastSeen"])


def test_a_failing_source_keeps_its_edges_and_no_other_source_stops(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    install(api, "shop")
    with (
        FakePrometheus([Edge("a", "b", rate=2), Edge("a", "c", rate=1)]) as traces,
        FakePrometheus([Edge("a", "b", rate=4)]) as more_traces,
    ):
        sources = [
            {
                "name": "traces-east",
                "type": "otel",
                "prometheus": {"url": traces.url},
                "interval": "1s",
            },
            {
                "name": "traces-west",
                "type": "otel",
                "prometheus": {"url": more_traces.url, "timeout": "1s"},
                "interval": "1s",
            },
        ]
        api.kubectl.apply(graph("shop", sources=sources), sdep("a", "b"), sdep("b"))
        start_operator()

        wait_for(
            lambda: (
                set(reporters(api).get(("a", "b"), [])) == {"manual", "traces-east", "traces-west"}
            ),
            timeout=60,
        )
        assert reporters(api)[("a", "c")] == ["traces-east"]
        healthy = condition(api.kubectl.get("sg", "shop", "-n", "shop"), "ObservedSourceHealthy")
        assert (healthy["status"], healthy["reason"]) == ("True", "Polled")
        both = sources_status(api)
        assert {name: (s["type"], s["healthy"]) for name, s in both.items()} == {
            "traces-east": ("otel", True),
            "traces-west": ("otel", True),
        }
        assert both["traces-east"]["edges"] == 2 and both["traces-west"]["edges"] == 1

        # West breaks: its edges stay, east keeps being polled and seeing new edges.
        more_traces.mode = "unavailable"
        wait_for(lambda: sources_status(api)["traces-west"]["healthy"] is False, timeout=60)
        traces.serve([Edge("a", "b", rate=2), Edge("a", "c", rate=1), Edge("b", "d", rate=1)])
        wait_for(lambda: ("b", "d") in reporters(api), timeout=60)
        now = sources_status(api)
        assert now["traces-east"]["healthy"] is True
        assert "HTTP 503" in now["traces-west"]["lastError"]
        assert set(reporters(api)[("a", "b")]) == {"manual", "traces-east", "traces-west"}
        unhealthy = condition(api.kubectl.get("sg", "shop", "-n", "shop"), "ObservedSourceHealthy")
        assert unhealthy["status"] == "False"
        assert unhealthy["message"].startswith("source traces-west (otel): ")
        assert jsonpath(api, "sg", "shop", "{.status.staleEdges}") == "0"

        # A source taken out of the spec stops polling; what it saw stays, unrefreshed, to age
        # out as any edge no longer seen would (a reverted edit loses nothing).
        west_seen = last_seen(api, ("a", "b"), "traces-west")
        api.kubectl.apply(graph("shop", sources=sources[:1]))
        wait_for(lambda: set(sources_status(api)) == {"traces-east"}, timeout=60)
        assert set(reporters(api)[("a", "b")]) == {"manual", "traces-east", "traces-west"}
        assert last_seen(api, ("a", "b"), "traces-west") == west_seen


def test_istio_and_linkerd_edges_reach_the_snapshot_through_prometheus(
    api: Api, tmp_path: Path, start_operator: Callable[..., OperatorProcess]
) -> None:
    require_binary("prometheus", "the operator polls a real Prometheus")
    series = [
        *istio_request("frontend", "cartservice", rate=4),
        *istio_request(
            "curl", "frontend", rate=1, reporters=("destination",), source_workload="unknown"
        ),
        *linkerd_request("cartservice", "redis-cart", rate=2, destination_kind="statefulset"),
    ]
    with (
        MeshExporter(series) as exporter,
        PrometheusServer(tmp_path / "prometheus", [exporter.target]) as prometheus,
    ):
        prometheus.wait_for_series("rate(istio_requests_total[30s]) > 0", 1, timeout=30)
        install(api, "shop")
        sources = [
            {
                "name": name,
                "type": name,
                "prometheus": {"url": prometheus.url},
                "interval": "2s",
                "window": "30s",
            }
            for name in ("istio", "linkerd")
        ]
        api.kubectl.apply(graph("shop", sources=sources), sdep("frontend", "cartservice"))
        start_operator()
        wanted = {
            ("frontend", "cartservice"),
            ("unknown", "frontend"),
            ("cartservice", "redis-cart"),
        }
        wait_for(lambda: wanted <= set(reporters(api)), timeout=60)
        doc = snapshot_document(api, "shop-graph")
        edges = {(e["source"], e["target"]): e for e in doc["edges"]}
        cart = edges[("frontend", "cartservice")]
        assert [(s["kind"], s.get("name"), s["confidence"]) for s in cart["sources"]] == [
            ("manual", None, 1.0),
            ("service-mesh", "istio", 0.9),
        ]
        assert cart["traffic"]["requestRate"] > 0
        assert edges[("cartservice", "redis-cart")]["sources"][0]["name"] == "linkerd"
        nodes = {n["name"]: n for n in doc["nodes"]}
        assert nodes["unknown"]["role"] == "virtual"
        assert edges[("unknown", "frontend")]["sources"][0]["virtual"] == "source"
        wait_for(
            lambda: (
                {n: s.get("healthy") for n, s in sources_status(api).items()}
                == {"istio": True, "linkerd": True}
            ),
            timeout=60,
        )
