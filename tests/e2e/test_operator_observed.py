"""Observed dependencies in the running operator: a real Prometheus, then a failing one."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_operator_support import (
    condition,
    edges_of,
    events,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_document,
)
from tests.support.binaries import require_binary
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import (
    Edge,
    FakePrometheus,
    PrometheusServer,
    ServiceGraphExporter,
)

TOKEN = "s3cr3t-t0ken-value"  # must never show up in anything the operator writes


@pytest.fixture
def exporter() -> Iterator[ServiceGraphExporter]:
    edges = [Edge("a", "b", rate=5, latency=0.02), Edge("a", "c", rate=3, failed_ratio=0.1)]
    with ServiceGraphExporter(edges) as running:
        yield running


@pytest.fixture
def prometheus(tmp_path: Path, exporter: ServiceGraphExporter) -> Iterator[PrometheusServer]:
    require_binary("prometheus", "the operator polls a real Prometheus")
    with PrometheusServer(tmp_path / "prometheus", [exporter.target]) as server:
        server.wait_for_series("traces_service_graph_request_total", 2, timeout=30)
        yield server


def status(api: Api) -> dict[str, object]:
    found: dict[str, object] = api.kubectl.get("servicegraph", "shop", "-n", "shop")["status"]
    return found


def test_observed_edge_is_drift_then_goes_stale(
    api: Api,
    prometheus: PrometheusServer,
    exporter: ServiceGraphExporter,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    install(api, "shop")
    observed = {"prometheus": {"url": prometheus.url}, "interval": "2s", "window": "10s"}
    api.kubectl.apply(graph("shop", observed=observed, staleAfter="12s"), sdep("a", "b"), sdep("b"))
    start_operator()

    # a -> c is observed, never declared: drift.
    wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.undeclared}") == "1", timeout=60)
    now = status(api)
    assert now["observedEdges"] == 2 and now["unobserved"] == 0 and now["staleEdges"] == 0
    assert now["driftSamples"] == {"undeclared": [{"source": "a", "target": "c"}], "unobserved": []}
    healthy = condition(api.kubectl.get("sg", "shop", "-n", "shop"), "ObservedSourceHealthy")
    assert (healthy["status"], healthy["reason"]) == ("True", "Polled")
    observed_status = now["observed"]
    assert isinstance(observed_status, dict) and observed_status["series"] >= 2
    assert observed_status["lastSuccessTime"] and not observed_status.get("lastError")
    doc = snapshot_document(api, "shop-graph")
    edge = next(e for e in doc["edges"] if (e["source"], e["target"]) == ("a", "c"))
    assert edge["traffic"]["requestRate"] > 0 and 0 < edge["traffic"]["errorRate"] <= 0.2
    assert [s["kind"] for s in edge["sources"]] == ["otel"]
    assert jsonpath(api, "sdep", "a", "{.status.unresolvedTargets}") == "[]"

    # The exporter stops serving it: after the window it is no longer seen, after
    # staleAfter it is stale, kept in the snapshot but no longer drift.
    exporter.remove("a", "c")
    wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.staleEdges}") == "1", timeout=60)
    assert jsonpath(api, "sg", "shop", "{.status.undeclared}") == "0"
    doc = snapshot_document(api, "shop-graph")
    assert ("a", "c") in edges_of(doc)
    assert next(e for e in doc["edges"] if e["target"] == "c")["stale"] is True


def test_failing_source_keeps_the_last_good_graph_and_recovers(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    install(api, "shop")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "prom-token", "namespace": "shop"},
        "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
    }
    with FakePrometheus([Edge("a", "x", rate=2)]) as fake:
        observed = {
            "prometheus": {
                "url": fake.url,
                "bearerTokenSecretRef": {"name": "prom-token", "key": "token"},
                "timeout": "2s",
            },
            "interval": "1s",
        }
        api.kubectl.apply(secret, graph("shop", observed=observed), sdep("a"))
        operator = start_operator()
        wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.undeclared}") == "1", timeout=30)
        assert fake.requests[-1].headers.get("authorization") == f"Bearer {TOKEN}"

        fake.mode = "unauthorized"
        healthy = '{.status.conditions[?(@.type=="ObservedSourceHealthy")]}'
        wait_for(lambda: '"reason":"Unauthorized"' in jsonpath(api, "sg", "shop", healthy))
        current = api.kubectl.get("sg", "shop", "-n", "shop")
        assert condition(current, "ObservedSourceHealthy")["status"] == "False"
        assert condition(current, "Ready")["status"] == "True"
        # The last good observation stays in the graph.
        assert current["status"]["undeclared"] == 1 and current["status"]["observedEdges"] == 1
        assert current["status"]["observed"]["lastError"].startswith("Unauthorized")

        fake.stop()
        wait_for(lambda: '"reason":"Unreachable"' in jsonpath(api, "sg", "shop", healthy))
        fake.start()
        fake.mode = "ok"
        wait_for(lambda: '"reason":"Polled"' in jsonpath(api, "sg", "shop", healthy), timeout=30)
        assert jsonpath(api, "sg", "shop", "{.status.undeclared}") == "1"

        # The token is in none of what the operator wrote or logged.
        written = api.kubectl("get", "sg,sdep,cm,events", "-n", "shop", "-o", "yaml")
        assert TOKEN not in written and TOKEN not in operator.log()
        assert not [e for e in events(api, "shop") if TOKEN in str(e)]
