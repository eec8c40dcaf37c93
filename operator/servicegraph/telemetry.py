"""The operator's own metrics, served for Prometheus on `servicegraph run --metrics-port`.

Labelled by ServiceGraph namespace and name only, never per service: a 5,000-service graph
must not become 5,000 series.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_GRAPH = ("namespace", "name")


@dataclass(frozen=True)
class Metrics:
    recomputations: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_recomputations", "Graph recomputations.", _GRAPH
        )
    )
    recompute_seconds: Histogram = field(
        default_factory=lambda: Histogram(
            "servicegraph_recompute_seconds",
            "Time to merge and analyse a graph and build its snapshot document.",
            _GRAPH,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
    )
    writes: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_api_writes",
            "Writes to the Kubernetes API by target: servicegraph-status, "
            "servicedependency-status, configmap.",
            ("target",),
        )
    )
    snapshot_bytes: Gauge = field(
        default_factory=lambda: Gauge(
            "servicegraph_snapshot_bytes", "Size of the snapshot document (JSON).", _GRAPH
        )
    )


METRICS = Metrics()


def serve_metrics(port: int) -> None:
    """Serve /metrics on `port` in a background thread; 0 turns metrics off."""
    if port:
        start_http_server(port)
