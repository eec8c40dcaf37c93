"""Istio and Linkerd sources against Debian's real Prometheus: exporters serve the meshes' own
names and labels, both proxies' reports of each request among them, and the poll must count
every request once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from servicegraph.api import SourceType
from servicegraph.graph import NodeRole, Observation, SourceKind, VirtualEnd
from servicegraph.observed import PollResult, PrometheusQuery, poll
from tests.integration.conftest import BOUTIQUE, boutique_edges
from tests.support.binaries import require_binary
from tests.support.mesh_exporters import (
    MeshExporter,
    Series,
    expected_p95_ms,
    istio_request,
    istio_tcp,
    linkerd_request,
    linkerd_tcp,
)
from tests.support.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

WINDOW = "30s"
ISTIO_SERIES = [
    *istio_request("frontend", "cartservice", rate=4, failed_ratio=0.25, latency_ms=20),
    *istio_request("checkoutservice", "paymentservice", rate=2, failed_ratio=0.5, protocol="grpc"),
    # a caller outside the mesh: only the destination's proxy reports it
    *istio_request(
        "curl", "frontend", rate=3, reporters=("destination",), source_workload="unknown"
    ),
    # traffic leaving the mesh, and a pod known only by its address
    *istio_request(
        "frontend",
        "api.stripe.com",
        rate=1,
        reporters=("source",),
        destination_canonical="unknown",
        destination_service_name="PassthroughCluster",
    ),
    *istio_request(
        "frontend",
        "gone",
        rate=1,
        reporters=("source",),
        destination_canonical="unknown",
        destination_service_name="10.1.2.3:8080",
    ),
    # ambient mode: the waypoint reports for the caller
    *istio_request("reviews", "ratings", rate=2, reporters=("waypoint", "destination")),
    *istio_tcp("cartservice", "redis-cart", connections=0.5),
]
LINKERD_SERIES = [
    *linkerd_request("web", "api", rate=5, failed_ratio=0.2, latency_ms=40),
    *linkerd_request("api", "db", rate=2, destination_kind="statefulset"),
    *linkerd_request("agent", "api", rate=1, kind="daemonset"),
    *linkerd_tcp("api", "cache", connections=0.3),
    # a callee without a proxy: the caller's report only, the measure of one report
    *linkerd_request("web", "legacy", rate=1, inbound=False),
]


def boutique_series() -> list[Series]:
    """Istio's view of the Online Boutique: every declared call but checkout -> email, and one
    nobody declared (checkout -> ad)."""
    calls = {(e.client, e.server) for e in boutique_edges()}
    calls = (calls - {("checkoutservice", "emailservice")}) | {("checkoutservice", "adservice")}
    return [s for caller, callee in sorted(calls) for s in istio_request(caller, callee, rate=3)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PrometheusServer]]:
    """One Prometheus scraping the Istio and Linkerd exporters, one the boutique's Istio."""
    require_binary("prometheus", "the mesh sources query a real Prometheus")
    meshes = [MeshExporter(ISTIO_SERIES), MeshExporter(LINKERD_SERIES)]
    boutique = MeshExporter(boutique_series())
    for exporter in (*meshes, boutique):
        exporter.start()
    folder = tmp_path_factory.mktemp("mesh")
    started: list[PrometheusServer] = []
    try:
        for name, targets in (("meshes", meshes), ("boutique", [boutique])):
            started.append(PrometheusServer(folder / name, [e.target for e in targets]).start())
        for server in started:
            server.wait_for_series("rate(istio_requests_total[30s]) > 0", 1, timeout=30)
        started[0].wait_for_series("rate(response_total[30s]) > 0", 1, timeout=30)
        yield started
    finally:
        for server in started:
            server.stop()
        for exporter in (*meshes, boutique):
            exporter.stop()


@pytest.fixture(scope="module")
def meshes(servers: list[PrometheusServer]) -> PrometheusServer:
    return servers[0]


@pytest.fixture(scope="module")
def boutique(servers: list[PrometheusServer]) -> PrometheusServer:
    return servers[1]


def poll_until_complete(query: PrometheusQuery, count: int) -> PollResult:
    """rate() needs two scrapes of each series: poll until all edges are there."""
    deadline = time.monotonic() + 30
    while True:
        result = asyncio.run(poll(query, now=datetime.now(UTC)))
        if len(result.observations) >= count or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def by_edge(result: PollResult) -> dict[tuple[str, str], Observation]:
    return {(o.source, o.target): o for o in result.observations}


def istio(server: PrometheusServer) -> PrometheusQuery:
    return PrometheusQuery(
        server.url, window=WINDOW, source_type=SourceType.ISTIO, source_name="mesh", timeout=5.0
    )


def test_istio_counts_each_request_once(meshes: PrometheusServer) -> None:
    result = poll_until_complete(istio(meshes), 6)
    edges = by_edge(result)
    assert set(edges) == {
        ("frontend", "cartservice"),
        ("checkoutservice", "paymentservice"),
        ("unknown", "frontend"),
        ("frontend", "PassthroughCluster"),
        ("reviews", "ratings"),
        ("cartservice", "redis-cart"),
    }  # the IP-like destination is dropped, the boutique's calls are another job's
    # Every series started together: while the window fills rate() is low by the same factor
    # for all, so rates are measured against the outside caller's, which one proxy reports.
    outside = edges[("unknown", "frontend")]
    assert outside.virtual == VirtualEnd.SOURCE and outside.traffic is not None
    factor = outside.traffic.request_rate / 3
    cart = edges[("frontend", "cartservice")]
    assert cart.kind == SourceKind.SERVICE_MESH and cart.source_name == "mesh"
    assert cart.traffic is not None
    # 4, not 8: both proxies report each request
    assert cart.traffic.request_rate == pytest.approx(4 * factor, rel=0.05)
    assert cart.traffic.error_rate == pytest.approx(0.25, rel=0.1)
    assert cart.traffic.p95_latency_ms == pytest.approx(expected_p95_ms(20), rel=0.01)
    assert cart.attributes.protocol == "http"
    payment = edges[("checkoutservice", "paymentservice")]
    assert payment.attributes.protocol == "grpc"
    assert payment.traffic is not None and payment.traffic.error_rate == pytest.approx(0.5, rel=0.1)
    assert edges[("frontend", "PassthroughCluster")].virtual == VirtualEnd.TARGET
    ambient = edges[("reviews", "ratings")].traffic
    assert ambient is not None and ambient.request_rate == pytest.approx(2 * factor, rel=0.05)
    tcp = edges[("cartservice", "redis-cart")].traffic
    assert tcp is not None and tcp.connection_type == "tcp"
    assert tcp.request_rate == pytest.approx(0.5 * factor, rel=0.05) and tcp.error_rate == 0


def test_linkerd_counts_outbound_reports_of_every_workload_kind(meshes: PrometheusServer) -> None:
    query = PrometheusQuery(
        meshes.url, window=WINDOW, source_type=SourceType.LINKERD, source_name="linkerd"
    )
    edges = by_edge(poll_until_complete(query, 5))
    assert set(edges) == {
        ("web", "api"),
        ("api", "db"),
        ("agent", "api"),
        ("api", "cache"),
        ("web", "legacy"),
    }
    legacy = edges[("web", "legacy")].traffic
    assert legacy is not None
    factor = legacy.request_rate / 1  # one report per request (see the Istio test)
    web = edges[("web", "api")].traffic
    assert web is not None
    assert web.request_rate == pytest.approx(5 * factor, rel=0.05)  # inbound not counted
    assert web.error_rate == pytest.approx(0.2, rel=0.1)
    assert web.p95_latency_ms == pytest.approx(expected_p95_ms(40), rel=0.01)
    cache = edges[("api", "cache")].traffic
    assert cache is not None and cache.connection_type == "tcp"


def test_an_istio_graph_of_the_boutique_drifts_where_the_series_differ(
    boutique: PrometheusServer,
) -> None:
    exe = Path(sys.executable).with_name("servicegraph")
    deadline = time.monotonic() + 30
    while True:
        result = subprocess.run(
            [
                str(exe),
                "analyze",
                str(BOUTIQUE),
                "--prometheus",
                boutique.url,
                "--source",
                "istio",
                "--window",
                WINDOW,
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        if report["observed"]["edges"] >= 16 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert report["observed"]["source"] == "istio"
    assert report["drift"] == {
        "undeclared": [{"source": "checkoutservice", "target": "adservice"}],
        "unobserved": [{"source": "checkoutservice", "target": "emailservice"}],
    }


def test_metric_prefix_is_refused_for_a_mesh(meshes: PrometheusServer) -> None:
    exe = Path(sys.executable).with_name("servicegraph")
    result = subprocess.run(
        [
            str(exe),
            "analyze",
            str(BOUTIQUE),
            "--prometheus",
            meshes.url,
            "--source",
            "linkerd",
            "--metric-prefix",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--metric-prefix is only for --source otel" in result.stderr
    assert "Traceback" not in result.stderr


def test_virtual_nodes_are_marked_in_the_graph(meshes: PrometheusServer) -> None:
    from servicegraph.graph import analyse

    graph = analyse([], poll_until_complete(istio(meshes), 6).observations, now=datetime.now(UTC))
    assert graph.nodes["unknown"].role == NodeRole.VIRTUAL
    assert graph.nodes["PassthroughCluster"].role == NodeRole.VIRTUAL
    assert graph.nodes["frontend"].role == NodeRole.SERVICE
