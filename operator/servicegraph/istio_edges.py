"""Istio's standard metrics as edges.

    istio_requests_total                         counter    HTTP and gRPC requests
    istio_request_duration_milliseconds_bucket   histogram  their latency
    istio_tcp_connections_opened_total           counter    TCP connections
    istio_tcp_sent_bytes_total                   counter    TCP bytes sent

Each request is counted once, as Kiali counts it: the caller's proxy reports it
(`reporter="source"`, or `"waypoint"` in ambient mode), and the destination's report counts
only for a caller outside the mesh (`source_workload="unknown"`), which no proxy reported.
A request fails with a 5xx `response_code` or a `grpc_response_status` other than 0.

Nodes are `source_canonical_service` and `destination_canonical_service`, the names traces
carry, so mesh edges merge with OpenTelemetry's and with declarations; the namespace is not
part of the name. A caller outside the mesh is the virtual node `unknown`; traffic leaving the
mesh goes to the virtual nodes `PassthroughCluster` or `BlackHoleCluster`; a destination known
only by an IP address (pods churning) is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Final

from servicegraph.graph import VirtualEnd
from servicegraph.mesh_series import INDEPENDENT, TCP, EdgeKey, mesh_observations
from servicegraph.series import QUANTILE, ip_like, usable_name

__all__ = ["INDEPENDENT", "observations", "queries"]

UNKNOWN: Final = "unknown"
VIRTUAL_DESTINATIONS: Final = frozenset({"PassthroughCluster", "BlackHoleCluster"})
BY: Final = (
    "source_canonical_service, source_workload_namespace, destination_canonical_service, "
    "destination_service_name, destination_service_namespace, request_protocol"
)
_SOURCE_REPORTS: Final = 'reporter=~"source|waypoint"'
_OUTSIDE_CALLERS: Final = 'reporter="destination", source_workload="unknown"'
_CLUSTER_SUFFIX: Final = ".svc.cluster.local"


def _counted_once(metric: str, window: str, matchers: str = "") -> str:
    """rate() of `metric` over the series that count each request once."""
    extra = f", {matchers}" if matchers else ""
    return (
        f"rate({metric}{{{_SOURCE_REPORTS}{extra}}}[{window}]) or "
        f"rate({metric}{{{_OUTSIDE_CALLERS}{extra}}}[{window}])"
    )


def queries(metric_prefix: str, window: str) -> dict[str, str]:
    """Rate, failed rate, p95 and TCP, by caller and destination (`metric_prefix` is not
    used: Istio's names are fixed)."""
    requests = "istio_requests_total"
    failed = " or ".join(
        f"({_counted_once(requests, window, matcher)})"
        for matcher in ('response_code=~"5.."', 'grpc_response_status!~"0|"')
    )
    return {
        "rate": f"sum by ({BY}) ({_counted_once(requests, window)})",
        "failed": f"sum by ({BY}) ({failed})",
        "latency": f"histogram_quantile({QUANTILE}, sum by ({BY}, le) "
        f"({_counted_once('istio_request_duration_milliseconds_bucket', window)}))",
        "tcp": f"sum by ({BY}) ({_counted_once('istio_tcp_connections_opened_total', window)})",
        "tcp_bytes": f"sum by ({BY}) ({_counted_once('istio_tcp_sent_bytes_total', window)})",
    }


def edge_key(labels: Mapping[str, str]) -> EdgeKey | None:
    """The two ends a series is about, or None for one that names no usable edge."""
    source = labels.get("source_canonical_service", "")
    virtual = VirtualEnd.NONE
    if source in ("", UNKNOWN):
        source, virtual = UNKNOWN, VirtualEnd.SOURCE
    target = labels.get("destination_canonical_service", "")
    if target in ("", UNKNOWN):
        target = labels.get("destination_service_name", "").removesuffix(_CLUSTER_SUFFIX)
        if target in VIRTUAL_DESTINATIONS:
            if virtual:
                return None  # from outside the mesh to outside it: no edge of ours
            virtual = VirtualEnd.TARGET
        elif "." in target and not ip_like(target):
            target = target.split(".")[0]  # reviews.bookinfo.svc: the Service's own name
    if ip_like(target) or not (usable_name(source) and usable_name(target)):
        return None
    protocol = labels.get("request_protocol", "")
    return EdgeKey(source, target, virtual, protocol if protocol in ("grpc", "http", TCP) else None)


# What `observed.poll` calls: the accumulation every mesh shares, with this mesh's labels.
observations: Final = partial(mesh_observations, key_of=edge_key)
