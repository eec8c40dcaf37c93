"""What a year of polls costs: the snapshot is rewritten for topology at once, for moving
figures at most once per `spec.snapshot.minInterval`, and history older than
`spec.observed.retention` leaves it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from servicegraph.graph import Observation, ServiceDeclaration, SourceKind, Traffic
from tests.e2e.test_operator_support import (
    READY,
    edges_of,
    graph,
    install,
    jsonpath,
    sdep,
    seed_snapshot,
    snapshot_document,
)
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess, StartOperator
from tests.support.prometheus import (
    PROMETHEUS,
    SKIP_REASON,
    Edge,
    PrometheusServer,
    ServiceGraphExporter,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    if PROMETHEUS is None:
        pytest.skip(SKIP_REASON)
    edges = [Edge("a", "b", rate=5, latency=0.02), Edge("a", "c", rate=3, failed_ratio=0.1)]
    with (
        ServiceGraphExporter(edges) as exporter,
        PrometheusServer(tmp_path / "prometheus", [exporter.target]) as server,
    ):
        server.wait_for_series("traces_service_graph_request_total", 2, timeout=30)
        yield server


def snapshot_writes(operator: OperatorProcess) -> int:
    return int(operator.metric("servicegraph_snapshot_writes_total", name="shop"))


def polls(operator: OperatorProcess) -> int:
    return int(operator.metric("servicegraph_observed_poll_seconds_count", name="shop"))


def test_steady_traffic_does_not_rewrite_the_snapshot_on_every_poll(
    api: Api, prometheus: PrometheusServer, start_operator: StartOperator
) -> None:
    install(api, "shop")
    observed = {"prometheus": {"url": prometheus.url}, "interval": "1s", "window": "30s"}
    api.kubectl.apply(graph("shop", observed=observed), sdep("a", "b"), sdep("b"))
    operator = start_operator()
    wait_for(lambda: jsonpath(api, "sg", "shop", "{.status.observedEdges}") == "2", timeout=60)
    written = snapshot_writes(operator)
    first_polls = polls(operator)
    # Rates and lastSeen move with every poll; five polls later nothing was rewritten.
    wait_for(lambda: polls(operator) >= first_polls + 5, timeout=60)
    assert snapshot_writes(operator) == written
    assert jsonpath(api, "sg", "shop", READY) == "True"

    # A change of topology is written at once, minInterval or not.
    api.kubectl.apply(sdep("b", "d"))
    wait_for(lambda: ("b", "d") in edges_of(snapshot_document(api, "shop-graph")), timeout=20)
    assert snapshot_writes(operator) == written + 1


def test_history_past_the_retention_leaves_the_graph(
    api: Api, start_operator: StartOperator
) -> None:
    """A preview environment's peer seen 40 days ago, with the default retention of 30 days:
    gone after the restart, and counted."""
    install(api, "shop")
    # Nothing listens on port 9 (discard) of the loopback: every poll fails at once.
    unreachable = {"prometheus": {"url": "http://127.0.0.1:9"}, "interval": "1h"}
    api.kubectl.apply(graph("shop", observed=unreachable, staleAfter="168h"), sdep("a"))
    now = datetime.now(UTC).replace(microsecond=0)
    seen = {"pr-1234-web": now - timedelta(days=40), "b": now - timedelta(days=2)}
    seed_snapshot(
        api,
        "shop",
        [ServiceDeclaration("a", "shop", "a")],
        [
            Observation("a", peer, SourceKind.OTEL, when, traffic=Traffic(1.0, 0.0))
            for peer, when in seen.items()
        ],
        spec={"observed": unreachable},
    )
    operator = start_operator()
    wait_for(lambda: operator.metric("servicegraph_observations_pruned_total") == 1, timeout=30)
    wait_for(lambda: edges_of(snapshot_document(api, "shop-graph")) == {("a", "b")}, timeout=20)
    nodes = {n["name"] for n in snapshot_document(api, "shop-graph")["nodes"]}
    assert nodes == {"a", "b"}
