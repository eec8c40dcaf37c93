"""OpenTelemetry service-graph edges, as the collector's `servicegraph` connector and Tempo's
metrics-generator write them: one set of series per edge, labelled `client`, `server` and
`connection_type`:

    PREFIX_request_total                counter    every request (the collector adds `failed`)
    PREFIX_request_failed_total         counter    failed requests
    PREFIX_request_server_seconds       histogram  latency as the server saw it
    PREFIX_request_client_seconds       histogram  latency as the client saw it

Three instant queries (request rate, failed rate, p95 server latency over the window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from servicegraph.graph import EdgeAttributes, Observation, SourceKind, Traffic
from servicegraph.series import CONTROL, QUANTILE, Sample, positive, significant, usable_name

EDGE_LABELS: Final = ("client", "server", "connection_type")
INDEPENDENT: Final = frozenset[str]()  # no request, no edge: the other queries can wait
MESSAGING_SYSTEM: Final = "messaging_system"
DATABASE: Final = "database"
VIRTUAL_NODE: Final = "virtual_node"


def queries(metric_prefix: str, window: str) -> dict[str, str]:
    """The three instant queries, by what they measure."""
    by = "sum by (client, server, connection_type)"
    return {
        "rate": f"{by} (rate({metric_prefix}_request_total[{window}]))",
        "failed": f"{by} (rate({metric_prefix}_request_failed_total[{window}]))",
        "latency": f"histogram_quantile({QUANTILE}, "
        f"sum by (client, server, connection_type, le) "
        f"(rate({metric_prefix}_request_server_seconds_bucket[{window}])))",
    }


def observations(
    answers: Mapping[str, Sequence[Sample]],
    *,
    now: datetime,
    min_request_rate: float,
    source_name: str,
) -> list[Observation]:
    return observations_from_samples(
        answers.get("rate", ()),
        answers.get("failed", ()),
        answers.get("latency", ()),
        now=now,
        min_request_rate=min_request_rate,
        source_name=source_name,
    )


def observations_from_samples(
    rates: Sequence[Sample],
    failed: Sequence[Sample] = (),
    latency: Sequence[Sample] = (),
    *,
    now: datetime,
    min_request_rate: float = 0.0,
    source_name: str = "",
) -> list[Observation]:
    """One OpenTelemetry observation per (client, server), sorted.

    Series of one pair with different connection types are added up; the edge takes the type
    that carries most of the traffic and the highest p95. Edges at or below zero requests per
    second, or under `min_request_rate`, are noise. Figures are rounded (rates to 4 significant
    digits, latency to 0.1 ms) so that snapshots do not churn on noise.
    """
    edges: dict[tuple[str, str], _Edge] = {}
    for sample in rates:
        key = _edge_key(sample.labels)
        if key is None or not positive(sample.value):
            continue
        edge = edges.setdefault(key, _Edge())
        edge.rate += sample.value
        kind = _connection_type(sample.labels)
        edge.rate_by_type[kind] = edge.rate_by_type.get(kind, 0.0) + sample.value
    for sample in failed:
        key = _edge_key(sample.labels)
        if key in edges and positive(sample.value):
            edges[key].failed += sample.value
    for sample in latency:
        key = _edge_key(sample.labels)
        if key in edges and (positive(sample.value) or sample.value == 0):
            known = edges[key].p95
            edges[key].p95 = sample.value if known is None else max(known, sample.value)

    observations = []
    for (source, target), edge in sorted(edges.items()):
        if edge.rate < min_request_rate:
            continue
        connection_type = min(edge.rate_by_type.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        traffic = Traffic(
            request_rate=significant(edge.rate),
            error_rate=significant(min(1.0, edge.failed / edge.rate)),
            p95_latency_ms=None if edge.p95 is None else round(edge.p95 * 1000, 1),
            connection_type=connection_type,
        )
        mode = "async" if connection_type == MESSAGING_SYSTEM else "sync"
        observations.append(
            Observation(
                source=source,
                target=target,
                kind=SourceKind.OTEL,
                last_seen=now,
                attributes=EdgeAttributes(communication_mode=mode),
                traffic=traffic,
                source_name=source_name,
            )
        )
    return observations


@dataclass
class _Edge:
    rate: float = 0.0
    failed: float = 0.0
    p95: float | None = None
    rate_by_type: dict[str, float] = field(default_factory=dict)


def _edge_key(labels: Mapping[str, str]) -> tuple[str, str] | None:
    client, server = labels.get("client", ""), labels.get("server", "")
    if not (usable_name(client) and usable_name(server)):
        return None
    return client, server


def _connection_type(labels: Mapping[str, str]) -> str:
    """The label as it is, unless it is too odd to go into a snapshot (then: unknown, "")."""
    kind = labels.get("connection_type", "")
    return kind if len(kind) <= 63 and not CONTROL.search(kind) else ""
