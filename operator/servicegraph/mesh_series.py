"""What the service meshes' series have in common once their labels are read: per edge a
request rate, a failed rate, a p95 in milliseconds and TCP traffic, turned into observations.

Istio (`istio_edges`) and Linkerd (`linkerd_edges`) each say which labels name the two ends
and which series count; both answer the same four queries:

    rate      requests per second                 (HTTP and gRPC)
    failed    failed requests per second
    latency   p95 in milliseconds
    tcp       TCP connections opened per second   (an edge with TCP traffic only)
    tcp_bytes TCP bytes sent per second           (Istio: long-lived connections open none)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from servicegraph.graph import EdgeAttributes, Observation, SourceKind, Traffic, VirtualEnd
from servicegraph.series import Sample, positive, significant

TCP: Final = "tcp"
INDEPENDENT: Final = frozenset({"tcp", "tcp_bytes"})  # asked even when no request was seen


@dataclass(frozen=True, slots=True)
class EdgeKey:
    source: str
    target: str
    virtual: VirtualEnd = VirtualEnd.NONE
    protocol: str | None = None  # grpc, http, tcp: what the series say about the wire


@dataclass
class _Figures:
    rate: float = 0.0
    failed: float = 0.0
    p95_ms: float | None = None
    connections: float = 0.0
    tcp_bytes: float = 0.0
    protocols: frozenset[str] = frozenset()
    virtual: VirtualEnd = VirtualEnd.NONE


def mesh_observations(
    answers: Mapping[str, Sequence[Sample]],
    key_of: Callable[[Mapping[str, str]], EdgeKey | None],
    *,
    now: datetime,
    min_request_rate: float,
    source_name: str,
) -> list[Observation]:
    """One service-mesh observation per (source, target), sorted. Requests make an edge when
    their rate passes `min_request_rate`; an edge with TCP traffic only (connections opened or
    bytes sent) is kept with the connection rate as its request rate and no errors. Figures
    are rounded as OpenTelemetry's are (4 significant digits, 0.1 ms) so that snapshots do
    not churn on noise."""
    edges: dict[tuple[str, str], _Figures] = {}

    def figures(sample: Sample, *, create: bool) -> _Figures | None:
        key = key_of(sample.labels)
        if key is None:
            return None
        found = edges.get((key.source, key.target))
        if found is None and create:
            found = edges[(key.source, key.target)] = _Figures(virtual=key.virtual)
        if found is not None and key.protocol:
            found.protocols |= {key.protocol}
        return found

    for sample in answers.get("rate", ()):
        if positive(sample.value) and (found := figures(sample, create=True)):
            found.rate += sample.value
    for sample in answers.get("failed", ()):
        if positive(sample.value) and (found := figures(sample, create=False)):
            found.failed += sample.value
    for sample in answers.get("latency", ()):
        if (positive(sample.value) or sample.value == 0) and (
            found := figures(sample, create=False)
        ):
            found.p95_ms = sample.value if found.p95_ms is None else max(found.p95_ms, sample.value)
    for sample in answers.get("tcp", ()):
        if positive(sample.value) and (found := figures(sample, create=True)):
            found.connections += sample.value
    for sample in answers.get("tcp_bytes", ()):
        if positive(sample.value) and (found := figures(sample, create=True)):
            found.tcp_bytes += sample.value

    observations = []
    for (source, target), edge in sorted(edges.items()):
        if edge.rate > 0:
            if edge.rate < min_request_rate:
                continue
            traffic = Traffic(
                request_rate=significant(edge.rate),
                error_rate=significant(min(1.0, edge.failed / edge.rate)),
                p95_latency_ms=None if edge.p95_ms is None else round(edge.p95_ms, 1),
                connection_type="",
            )
        else:
            traffic = Traffic(significant(edge.connections), 0.0, None, TCP)
        protocol = (
            "grpc" if "grpc" in edge.protocols else "http" if "http" in edge.protocols else None
        )
        observations.append(
            Observation(
                source=source,
                target=target,
                kind=SourceKind.SERVICE_MESH,
                last_seen=now,
                attributes=EdgeAttributes(protocol=protocol),
                traffic=traffic,
                source_name=source_name,
                virtual=edge.virtual,
            )
        )
    return observations
