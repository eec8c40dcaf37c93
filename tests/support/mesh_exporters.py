"""Service-mesh metrics for a real Prometheus to scrape: Istio's and Linkerd's names and labels.

    with MeshExporter(istio_request("frontend", "cartservice", rate=4)) as exporter, \\
         PrometheusServer(tmp_path, [exporter.target]) as prometheus: ...

A request inside the mesh is reported by both proxies, as Istio's are (`reporter="source"`
and `reporter="destination"`), so a query that sums both counts it twice. Counters grow with
wall time at their rate, so rate() gives the rate back; histograms put every request in the
bucket of its latency. Own registry, own free port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric

from tests.support.exporter_server import ExporterServer

# Istio's default buckets of istio_request_duration_milliseconds; Linkerd's are similar.
MILLISECOND_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class Series:
    """A counter (`latency_ms` None) or a histogram of requests, at `rate` per second."""

    name: str
    labels: Mapping[str, str]
    rate: float
    latency_ms: float | None = None

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.name, tuple(sorted(self.labels.items()))


def expected_p95_ms(latency_ms: float) -> float:
    """histogram_quantile(0.95, ...) of requests all in the bucket of `latency_ms`."""
    lower = 0.0
    for upper in MILLISECOND_BUCKETS:
        if latency_ms <= upper:
            return lower + (upper - lower) * 0.95
        lower = upper
    return lower


def istio_request(
    source: str,
    destination: str,
    *,
    rate: float,
    failed_ratio: float = 0.0,
    latency_ms: float = 20.0,
    protocol: str = "http",
    reporters: Iterable[str] = ("source", "destination"),
    source_workload: str | None = None,
    destination_service_name: str | None = None,
    destination_canonical: str | None = None,
    namespace: str = "shop",
) -> list[Series]:
    """The series one stream of requests leaves, as each reporting proxy writes it."""
    series: list[Series] = []
    for reporter in reporters:
        for ok, share in ((True, 1.0 - failed_ratio), (False, failed_ratio)):
            if share <= 0:
                continue
            code = ("200" if ok else "503") if protocol == "http" else "200"
            grpc = "" if protocol != "grpc" else ("0" if ok else "14")
            labels = {
                "reporter": reporter,
                "source_workload": source_workload or source,
                "source_workload_namespace": namespace,
                "source_canonical_service": source if source_workload != "unknown" else "unknown",
                "destination_workload": destination,
                "destination_workload_namespace": namespace,
                "destination_canonical_service": destination_canonical or destination,
                "destination_service_name": destination_service_name or destination,
                "destination_service_namespace": namespace,
                "request_protocol": protocol,
                "response_code": code,
                "grpc_response_status": grpc,
                "connection_security_policy": "mutual_tls",
            }
            series.append(Series("istio_requests_total", labels, rate * share))
            series.append(
                Series("istio_request_duration_milliseconds", labels, rate * share, latency_ms)
            )
    return series


def istio_tcp(
    source: str, destination: str, *, connections: float, namespace: str = "shop"
) -> list[Series]:
    series = []
    for reporter in ("source", "destination"):
        labels = {
            "reporter": reporter,
            "source_workload": source,
            "source_workload_namespace": namespace,
            "source_canonical_service": source,
            "destination_workload": destination,
            "destination_workload_namespace": namespace,
            "destination_canonical_service": destination,
            "destination_service_name": destination,
            "destination_service_namespace": namespace,
            "request_protocol": "tcp",
        }
        series.append(Series("istio_tcp_connections_opened_total", labels, connections))
        series.append(Series("istio_tcp_sent_bytes_total", labels, connections * 1500))
    return series


def linkerd_request(
    source: str,
    destination: str,
    *,
    rate: float,
    failed_ratio: float = 0.0,
    latency_ms: float = 20.0,
    kind: str = "deployment",
    destination_kind: str = "deployment",
    namespace: str = "shop",
    inbound: bool = True,
) -> list[Series]:
    """Both proxies' view of one stream: the caller's outbound, the callee's inbound (none
    for a callee without a proxy)."""
    series = []
    views = (("outbound", kind), ("inbound", destination_kind))
    for direction, own in views if inbound else views[:1]:
        for classification, share in (("success", 1.0 - failed_ratio), ("failure", failed_ratio)):
            if share <= 0:
                continue
            labels = {
                "direction": direction,
                "namespace": namespace,
                own: source if direction == "outbound" else destination,
                "classification": classification,
                "status_code": "200" if classification == "success" else "500",
                "tls": "true",
            }
            if direction == "outbound":  # only the caller's proxy knows the destination
                labels |= {"dst_namespace": namespace, f"dst_{destination_kind}": destination}
            series.append(Series("response_total", labels, rate * share))
            series.append(Series("response_latency_ms", labels, rate * share, latency_ms))
    return series


def linkerd_tcp(
    source: str, destination: str, *, connections: float, namespace: str = "shop"
) -> list[Series]:
    labels = {
        "direction": "outbound",
        "namespace": namespace,
        "deployment": source,
        "dst_namespace": namespace,
        "dst_deployment": destination,
        "peer": "dst",
        "tls": "true",
    }
    return [Series("tcp_open_total", labels, connections)]


@dataclass
class _Count:
    series: Series
    total: float = 0.0
    updated: float = field(default_factory=time.monotonic)


class MeshExporter(ExporterServer):
    """Serves `Series` as counters and histograms (see the module)."""

    def __init__(self, series: Iterable[Series] = ()) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Any, _Count] = {}
        self.set_series(series)
        super().__init__()

    def set_series(self, series: Iterable[Series]) -> None:
        with self._lock:
            now = time.monotonic()
            wanted = {s.key: s for s in series}
            self._counts = {
                key: self._counts.get(key) or _Count(s, updated=now) for key, s in wanted.items()
            }
            for key, s in wanted.items():
                self._counts[key].series = s

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            for count in self._counts.values():
                count.total += count.series.rate * max(0.0, now - count.updated)
                count.updated = now
            snapshot = [(c.series, c.total) for c in self._counts.values()]
        # Plain families: one metric's series may carry different label names (Linkerd's
        # deployment or statefulset), as a real proxy's do.
        families: dict[str, Metric] = {}
        for series, total in snapshot:
            labels = dict(series.labels)
            if series.latency_ms is None:
                name = series.name.removesuffix("_total")
                family = families.setdefault(name, Metric(name, name, "counter"))
                family.add_sample(series.name, labels, total)
                continue
            family = families.setdefault(series.name, Metric(series.name, series.name, "histogram"))
            for bound in MILLISECOND_BUCKETS:
                count = total if series.latency_ms <= bound else 0.0
                family.add_sample(f"{series.name}_bucket", {**labels, "le": str(bound)}, count)
            family.add_sample(f"{series.name}_bucket", {**labels, "le": "+Inf"}, total)
            family.add_sample(f"{series.name}_count", labels, total)
            family.add_sample(f"{series.name}_sum", labels, total * series.latency_ms)
        yield from families.values()
