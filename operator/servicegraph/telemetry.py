"""What the operator tells about itself: Prometheus metrics, OpenTelemetry spans, watch restarts.

Metrics are labelled by ServiceGraph namespace and name only, never per service: a
5,000-service graph must not become 5,000 series.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from servicegraph.graph import Summary

_GRAPH = ("namespace", "name")
_SOURCE = (*_GRAPH, "source")
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _gauge(name: str, text: str) -> Gauge:
    return Gauge(f"servicegraph_graph_{name}", text, _GRAPH)


@dataclass(frozen=True)
class Metrics:
    recomputations: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_recomputations", "Graph recomputations.", _GRAPH
        )
    )
    coalesced_changes: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_coalesced_changes",
            "Changes folded into a recomputation that another change had already asked for.",
            _GRAPH,
        )
    )
    recompute_seconds: Histogram = field(
        default_factory=lambda: Histogram(
            "servicegraph_recompute_seconds",
            "Time to merge and analyse a graph and build its snapshot document.",
            _GRAPH,
            buckets=_SECONDS,
        )
    )
    reconcile_seconds: Histogram = field(
        default_factory=lambda: Histogram(
            "servicegraph_reconcile_seconds",
            "Time of a whole reconciliation: recompute, snapshot and status writes.",
            _GRAPH,
            buckets=_SECONDS,
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
    snapshot_writes: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_snapshot_writes",
            "New snapshot revisions written (each is one or more ConfigMap writes).",
            _GRAPH,
        )
    )
    pruned_observations: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_observations_pruned",
            "Observed edges dropped because no source saw them within spec.observed.retention.",
            _GRAPH,
        )
    )
    snapshot_bytes: Gauge = field(
        default_factory=lambda: Gauge(
            "servicegraph_snapshot_bytes", "Size of the snapshot document (JSON).", _GRAPH
        )
    )
    snapshot_shards: Gauge = field(
        default_factory=lambda: Gauge(
            "servicegraph_snapshot_shards", "Shard ConfigMaps of the snapshot (0: one).", _GRAPH
        )
    )
    snapshot_written: Gauge = field(
        default_factory=lambda: Gauge(
            "servicegraph_snapshot_last_write_timestamp_seconds",
            "When the snapshot was last written or found up to date.",
            _GRAPH,
        )
    )
    services: Gauge = field(default_factory=lambda: _gauge("services", "Services in the graph."))
    edges: Gauge = field(default_factory=lambda: _gauge("edges", "Edges in the graph."))
    cycles: Gauge = field(default_factory=lambda: _gauge("cycles", "Unacknowledged cycles."))
    stale_edges: Gauge = field(default_factory=lambda: _gauge("stale_edges", "Stale edges."))
    drift: Gauge = field(
        default_factory=lambda: _gauge("drift", "Undeclared plus unobserved edges.")
    )
    observed_healthy: Gauge = field(
        default_factory=lambda: Gauge(
            "servicegraph_observed_source_healthy",
            "1 when the last poll of the source succeeded, else 0.",
            _SOURCE,
        )
    )
    poll_seconds: Histogram = field(
        default_factory=lambda: Histogram(
            "servicegraph_observed_poll_seconds",
            "Time of a poll of an observed source, retries included.",
            _SOURCE,
            buckets=_SECONDS,
        )
    )
    poll_errors: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_observed_poll_errors",
            "Failed polls of observed sources by reason.",
            (*_SOURCE, "reason"),
        )
    )
    watch_restarts: Counter = field(
        default_factory=lambda: Counter(
            "servicegraph_watch_restarts",
            "Watch streams Kopf reopened after expiry (410 Gone) or silence.",
            ("resource",),
        )
    )

    def record_graph(self, namespace: str, name: str, summary: Summary) -> None:
        self.services.labels(namespace, name).set(summary.services)
        self.edges.labels(namespace, name).set(summary.edges)
        self.cycles.labels(namespace, name).set(summary.cycles)
        self.stale_edges.labels(namespace, name).set(summary.stale_edges)
        self.drift.labels(namespace, name).set(summary.drift)

    def forget_graph(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted graph, or alerts would fire on a graph that is gone."""
        self._forget((namespace, name), _GRAPH)

    def forget_source(self, namespace: str, name: str, source: str) -> None:
        """Drop the series of a source the graph no longer has."""
        self._forget((namespace, name, source), _SOURCE)

    def _forget(self, values: tuple[str, ...], names: tuple[str, ...]) -> None:
        for metric in vars(self).values():
            if tuple(metric._labelnames[: len(names)]) != names:
                continue
            # Families with more labels (poll errors by reason) have one series per value.
            for labels in [key for key in metric._metrics if key[: len(values)] == values]:
                metric.remove(*labels)


METRICS = Metrics()


def serve_metrics(port: int) -> None:
    """Serve /metrics on `port` in a background thread; 0 turns metrics off."""
    if port:
        start_http_server(port)


# -- tracing ---------------------------------------------------------------------------------

TRACER = trace.get_tracer("servicegraph")


def otlp_tracer_provider(environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A provider exporting spans over OTLP when the standard OTEL_EXPORTER_OTLP_*ENDPOINT is
    set, else None (no spans leave the process).

    The rest (resource attributes, headers, timeouts) comes from the standard OTEL_* variables,
    which the SDK reads itself.
    """
    env = os.environ if environ is None else environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    service = env.get("OTEL_SERVICE_NAME") or "servicegraph-operator"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def configure_tracing() -> bool:
    """Install the OTLP provider when the environment asks for one; whether it did."""
    provider = otlp_tracer_provider()
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider is not None


# -- watch restarts --------------------------------------------------------------------------

WATCH_LOGGER = "kopf._cogs.clients.watching"
# Kopf's own debug lines when it reopens a stream: "Restarting the watch-stream for R W." after
# 410 Gone, "Watch-stream for R W is inactive, reconnecting." after silence.
_RESTARTS = (
    re.compile(r"^Restarting the watch-stream for (\S+) "),
    re.compile(r"^Watch-stream for (\S+) .* is inactive, reconnecting"),
)


class WatchRestartCounter(logging.Filter):
    """Counts the watch streams Kopf reopens, from its debug lines: it has no other hook.

    Streams dropped by the network are reopened silently by Kopf and are not counted.
    The debug lines are dropped afterwards unless debug logging is on.
    """

    def __init__(self, *, keep_debug: bool = False) -> None:
        super().__init__()
        self.keep_debug = keep_debug

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for pattern in _RESTARTS:
            found = pattern.match(message)
            if found:
                METRICS.watch_restarts.labels(found.group(1)).inc()
        return record.levelno > logging.DEBUG or self.keep_debug


def count_watch_restarts(*, keep_debug: bool = False) -> None:
    watching = logging.getLogger(WATCH_LOGGER)
    watching.setLevel(logging.DEBUG)
    watching.addFilter(WatchRestartCounter(keep_debug=keep_debug))
