"""Several sources in one graph, in the running operator: each polled on its own, each
failure keeping its own edges and no other's, each named in the status and the snapshot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.test_operator_support import (
    condition,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_document,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import Edge, FakePrometheus


def sources_status(api: Api) -> dict[str, dict[str, Any]]:
    status = api.kubectl.get("servicegraph", "shop", "-n", "shop").get("status") or {}
    return {entry["name"]: entry for entry in status.get("sources") or []}


def reporters(api: Api) -> dict[tuple[str, str], list[str]]:
    doc = snapshot_document(api, "shop-graph")
    return {
        (e["source"], e["target"]): [s.get("name", s["kind"]) for s in e["sources"]]
        for e in doc["edges"]
    }


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

        # A source taken out of the spec takes its sightings with it.
        api.kubectl.apply(graph("shop", sources=sources[:1]))
        wait_for(lambda: set(sources_status(api)) == {"traces-east"}, timeout=60)
        wait_for(lambda: set(reporters(api)[("a", "b")]) == {"manual", "traces-east"}, timeout=60)
