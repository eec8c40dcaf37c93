"""Fixtures for the integration suite: real Prometheus servers scraping service-graph exporters.

One stack per test process (pytest -n runs one per worker), started on first use; all its
Prometheus servers start at once and are waited for together, since each one takes about five
seconds to look at its scrape targets and two more scrapes before rate() answers.

    stack.sample       exporter: the collector's edges (database, messaging, virtual node,
                       failures, noise, a self-call) under the default prefix
    stack.dynamic      exporter: no edges at first, under the prefix the collector's Prometheus
                       exporter gives with `namespace: servicegraph`; tests add edges at runtime
    stack.prometheus   scrapes sample and dynamic
    stack.boutique / stack.boutique_prometheus
                       every declared Online Boutique edge plus one undeclared (EXTRA_EDGE)
    stack.restartable  scrapes sample; the down-and-back test stops and restarts it
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# `python -m pytest` puts the repository root on sys.path, a bare `pytest` does not.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from servicegraph.manifests import load  # noqa: E402
from servicegraph.observed import PrometheusQuery  # noqa: E402
from tests.support.binaries import require_binary  # noqa: E402
from tests.support.prometheus import (  # noqa: E402
    DEFAULT_PREFIX,
    Edge,
    FakePrometheus,
    PrometheusServer,
    ServiceGraphExporter,
)

BOUTIQUE = ROOT / "manifests" / "examples" / "online-boutique"
WINDOW = "30s"
DYNAMIC_PREFIX = "servicegraph_traces_service_graph"
NOISE = 0.005  # requests per second: the loadgenerator's health check, below any useful minimum

SAMPLE_EDGES = (
    Edge("frontend", "cartservice", rate=8, failed_ratio=0.25, latency=0.03),
    Edge("frontend", "productcatalogservice", rate=4, latency=0.007),
    # the same pair again, through an uninstrumented proxy: one edge, traffic added up
    Edge("frontend", "productcatalogservice", "virtual_node", rate=1, latency=0.007),
    Edge("cartservice", "redis-cart", "database", rate=6, latency=0.003),
    Edge("checkoutservice", "emailservice", "messaging_system", rate=2, latency=0.3),
    Edge(
        "checkoutservice",
        "api.payments.example",
        "virtual_node",
        rate=1,
        failed_ratio=0.5,
        latency=1.2,
    ),
    Edge("user", "frontend", "virtual_node", rate=3, latency=0.08),
    Edge("loadgenerator", "frontend", rate=NOISE),
    Edge("cartservice", "cartservice", rate=1),  # a service calling itself: the engine's business
)
EXTRA_EDGE = Edge("checkoutservice", "adservice", rate=2)


def boutique_edges() -> list[Edge]:
    """Every dependency the Online Boutique manifests declare, as observed traffic."""
    manifests = load([BOUTIQUE])
    edges = [
        Edge(dep.service, target.service, rate=3)
        for dep in manifests.dependencies
        for target in dep.spec.depends_on
    ]
    return sorted(edges, key=lambda e: e.key)


@dataclass
class Stack:
    sample: ServiceGraphExporter
    dynamic: ServiceGraphExporter
    boutique: ServiceGraphExporter
    prometheus: PrometheusServer
    boutique_prometheus: PrometheusServer
    restartable: PrometheusServer

    def query(
        self,
        server: PrometheusServer,
        *,
        metric_prefix: str = DEFAULT_PREFIX,
        min_request_rate: float = 0.0,
        window: str = WINDOW,
    ) -> PrometheusQuery:
        return PrometheusQuery(
            server.url,
            timeout=5.0,
            metric_prefix=metric_prefix,
            window=window,
            min_request_rate=min_request_rate,
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary("prometheus", "the integration suite queries real Prometheus servers")
    exporters = [
        ServiceGraphExporter(SAMPLE_EDGES),
        ServiceGraphExporter(prefix=DYNAMIC_PREFIX),
        ServiceGraphExporter([*boutique_edges(), EXTRA_EDGE]),
    ]
    servers: list[PrometheusServer] = []
    try:
        for exporter in exporters:
            exporter.start()
        sample, dynamic, boutique = exporters
        folder = tmp_path_factory.mktemp("prometheus")
        for name, targets in (
            ("main", [sample.target, dynamic.target]),
            ("boutique", [boutique.target]),
            ("restartable", [sample.target]),
        ):
            servers.append(PrometheusServer(folder / name, targets).start())
        main, shop, restartable = servers
        rate = PrometheusQuery("http://unused", window=WINDOW).promql["rate"]
        for server, count in ((main, len(SAMPLE_EDGES)), (restartable, len(SAMPLE_EDGES))):
            server.wait_for_series(rate, count)
        shop.wait_for_series(rate, len(boutique.edges))
        yield Stack(sample, dynamic, boutique, main, shop, restartable)
    finally:
        for server in servers:
            server.stop()
        for exporter in exporters:
            exporter.stop()


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    """A fake Prometheus answering for SAMPLE_EDGES; tests switch its mode to inject faults."""
    with FakePrometheus(SAMPLE_EDGES, delay=3.0) as server:
        yield server
