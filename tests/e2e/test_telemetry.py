"""What the running operator tells about itself: metrics a real Prometheus scrapes, JSON logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.test_operator_support import counts, free_port, graph, install, sdep
from tests.support.binaries import require_binary
from tests.support.emulator import Api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus import PrometheusServer

# Labels a series of ours may carry: graphs, write targets, poll error reasons, resources.
ALLOWED_LABELS = {"namespace", "name", "target", "reason", "resource", "le", "quantile"}


def test_metrics_are_scraped_by_prometheus(
    api: Api, tmp_path: Path, start_operator: Callable[..., OperatorProcess]
) -> None:
    require_binary("prometheus", "a real Prometheus scrapes the operator's metrics")
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "c"), sdep("c", "a"), sdep("d"))
    port = free_port()
    start_operator("--metrics-port", str(port))
    wait_for(lambda: counts(api, "shop") == "4/3", timeout=30)

    with PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{port}"]) as prometheus:
        selector = '{namespace="shop",name="shop"}'
        prometheus.wait_for_series(f"servicegraph_graph_services{selector}", 1, timeout=30)

        def value(promql: str) -> float:
            return float(prometheus.query(promql)[0]["value"][1])

        assert value(f"servicegraph_graph_services{selector}") == 4
        assert value(f"servicegraph_graph_edges{selector}") == 3
        assert value(f"servicegraph_graph_cycles{selector}") == 1
        assert value(f"servicegraph_graph_drift{selector}") == 0
        assert value(f"servicegraph_recomputations_total{selector}") >= 1
        assert value(f"servicegraph_reconcile_seconds_count{selector}") >= 1
        assert value('servicegraph_api_writes_total{target="servicegraph-status"}') >= 1
        assert value('servicegraph_api_writes_total{target="configmap"}') >= 1
        assert value(f"servicegraph_snapshot_bytes{selector}") > 0
        assert value(f"time() - servicegraph_snapshot_last_write_timestamp_seconds{selector}") < 600

        # Never a label per service: a big graph must stay a handful of series.
        series = prometheus.query('{__name__=~"servicegraph_.+"}')
        assert series
        for sample in series:
            labels = set(sample["metric"]) - {"__name__", "instance", "job"}
            assert labels <= ALLOWED_LABELS, sample["metric"]

    # A deleted graph takes its series along, or its alerts would fire for ever.
    api.kubectl("delete", "servicegraph", "shop", "-n", "shop")

    def gone() -> bool:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return "servicegraph_graph_services{" not in text

    wait_for(gone, timeout=30)


def test_logs_are_json_lines_about_their_object(
    api: Api, start_operator: Callable[..., OperatorProcess]
) -> None:
    install(api, "shop")
    api.kubectl.apply(graph("shop"), sdep("a", "b"), sdep("b", "a"))
    operator = start_operator()  # JSON is the default
    wait_for(lambda: counts(api, "shop") == "2/2", timeout=30)
    # ServiceDependency statuses come after the graph's: wait for them before stopping.
    wait_for(lambda: "ServiceDependency objects updated" in operator.log(), timeout=30)
    operator.stop()

    lines = [line for line in operator.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"message", "timestamp", "severity"} <= record.keys() for record in records)
    starts = ("snapshot ", "status updated", "new dependency cycle", "statuses of")
    ours = [r for r in records if r["message"].startswith(starts)]
    assert [r["message"].split(":")[0] for r in ours] == [
        "snapshot shop-graph written",
        "status updated",
        "new dependency cycle",
        "statuses of 2 ServiceDependency objects updated",
    ]
    for record in ours:  # every line says which graph it is about
        assert record["object"]["kind"] == "ServiceGraph"
        assert (record["object"]["namespace"], record["object"]["name"]) == ("shop", "shop")
    assert ours[2]["severity"] == "warn" and "a -> b -> a" in ours[2]["message"]
