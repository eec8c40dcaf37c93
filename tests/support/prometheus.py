"""Prometheus for tests: the real server, an OpenTelemetry service-graph exporter, and a fake.

    with ServiceGraphExporter([Edge("frontend", "cartservice", rate=5)]) as exporter, \\
         PrometheusServer(tmp_path, [exporter.target]) as prometheus:
        prometheus.wait_for_series(rate_query, 1)      # rate() needs two scrapes
        ... poll prometheus.url ...
        exporter.add(Edge("frontend", "adservice"))    # edges change at runtime

    with FakePrometheus() as fake:                      # faults on demand
        fake.serve(edges); fake.mode = "unauthorized"; fake.requests[-1].headers

Every server listens on its own free 127.0.0.1 port and is stopped on exit, so tests run in
parallel (pytest -n).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from tests.support.exporter_server import ExporterServer

PROMETHEUS = shutil.which("prometheus")
SKIP_REASON = (
    "the prometheus binary is not installed (Debian package `prometheus`, installed by "
    "scripts/install-system-packages.sh)"
)
DEFAULT_PREFIX = "traces_service_graph"
# The OpenTelemetry collector's servicegraph connector: default latency buckets, in seconds.
COLLECTOR_BUCKETS = (
    0.002,
    0.004,
    0.006,
    0.008,
    0.01,
    0.05,
    0.1,
    0.2,
    0.4,
    0.8,
    1,
    1.4,
    2,
    5,
    10,
    15,
)
LABELS = ("client", "server", "connection_type", "failed")


def free_port() -> int:
    """A port nobody listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the exporter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """One service-graph edge and the traffic the exporter makes up for it."""

    client: str
    server: str
    connection_type: str = ""  # "", "messaging_system", "database" or "virtual_node"
    rate: float = 10.0  # requests per second
    failed_ratio: float = 0.0
    latency: float = 0.03  # seconds, as the server saw it
    client_latency: float | None = None  # default: a little more than `latency`

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.client, self.server, self.connection_type)

    @property
    def p95_ms(self) -> float:
        """What histogram_quantile(0.95, ...) answers for this edge, in milliseconds."""
        return expected_p95(self.latency) * 1000


def expected_p95(latency: float, buckets: Sequence[float] = COLLECTOR_BUCKETS) -> float:
    """histogram_quantile interpolates linearly inside the bucket that holds every request."""
    lower = 0.0
    for upper in buckets:
        if latency <= upper:
            return lower + (upper - lower) * 0.95
        lower = upper
    return lower  # the +Inf bucket: Prometheus answers the highest finite bound


@dataclass
class _Counts:
    edge: Edge
    total: float = 0.0
    failed: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    def advance(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.total += self.edge.rate * elapsed
        self.failed += self.edge.rate * self.edge.failed_ratio * elapsed
        self.updated = now


class ServiceGraphExporter(ExporterServer):
    """Serves the metrics of the OpenTelemetry collector's servicegraph connector.

    Same names and labels as the connector (`client`, `server`, `connection_type`, `failed`):
    `PREFIX_request_total` split by `failed`, `PREFIX_request_failed_total`, and the
    histograms `PREFIX_request_server_seconds` and `PREFIX_request_client_seconds` with the
    connector's default buckets. Counters grow with wall time at each edge's rate, so rate()
    in Prometheus gives the rate back. Own CollectorRegistry, own free port.
    """

    def __init__(self, edges: Iterable[Edge] = (), *, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], _Counts] = {}
        self.set_edges(edges)
        super().__init__()

    # Edges, at runtime.

    @property
    def edges(self) -> list[Edge]:
        with self._lock:
            return [c.edge for c in self._counts.values()]

    def set_edges(self, edges: Iterable[Edge]) -> None:
        """Serve exactly these edges; counters of edges that stay keep growing from where
        they are."""
        with self._lock:
            now = time.monotonic()
            wanted = {edge.key: edge for edge in edges}
            for key in list(self._counts):
                if key not in wanted:
                    del self._counts[key]
            for key, edge in wanted.items():
                counts = self._counts.get(key)
                if counts is None:
                    self._counts[key] = _Counts(edge, updated=now)
                else:
                    counts.advance(now)
                    counts.edge = edge

    def add(self, edge: Edge) -> None:
        self.set_edges([*(e for e in self.edges if e.key != edge.key), edge])

    def remove(self, client: str, server: str) -> None:
        self.set_edges(e for e in self.edges if (e.client, e.server) != (client, server))

    # The prometheus_client collector protocol.

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            for counts in self._counts.values():
                counts.advance(now)
            snapshot = [(c.edge, c.total, c.failed) for c in self._counts.values()]
        total = CounterMetricFamily(
            f"{self.prefix}_request_total",
            "Total count of requests between two nodes",
            labels=LABELS,
        )
        failed = CounterMetricFamily(
            f"{self.prefix}_request_failed_total",
            "Total count of failed requests between two nodes",
            labels=LABELS,
        )
        server = HistogramMetricFamily(
            f"{self.prefix}_request_server_seconds",
            "Time for a request between two nodes as seen from the server",
            labels=LABELS,
        )
        client = HistogramMetricFamily(
            f"{self.prefix}_request_client_seconds",
            "Time for a request between two nodes as seen from the client",
            labels=LABELS,
        )
        for edge, requests, failures in snapshot:
            client_latency = edge.client_latency or edge.latency * 1.2
            parts = [("false", requests - failures)]
            if edge.failed_ratio > 0:
                parts.append(("true", failures))
                failed.add_metric([*edge.key, "true"], failures)
            for flag, count in parts:
                labels = [*edge.key, flag]
                total.add_metric(labels, count)
                server.add_metric(labels, _buckets(edge.latency, count), count * edge.latency)
                client.add_metric(labels, _buckets(client_latency, count), count * client_latency)
        yield from (total, failed, server, client)


def _buckets(latency: float, count: float) -> list[tuple[str, float]]:
    bounds = [(_go_float(b), count if latency <= b else 0.0) for b in COLLECTOR_BUCKETS]
    return [*bounds, ("+Inf", count)]


def _go_float(value: float) -> str:
    """A bucket bound as Go's Prometheus exporters write it: 1, not 1.0."""
    text = repr(float(value))
    return text.removesuffix(".0")


# --- the real Prometheus ---------------------------------------------------------------------


class PrometheusError(RuntimeError):
    pass


class PrometheusServer:
    """Debian's prometheus binary on a free loopback port, scraping `targets` every second.

    Data lives in `workdir`, so a restart (stop, then start) keeps what was scraped and the
    port, like a Prometheus pod that came back.
    """

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        scrape_interval: str = "1s",
        binary: str | None = PROMETHEUS,
    ) -> None:
        if binary is None:
            raise PrometheusError(SKIP_REASON)
        self.binary = binary
        self.workdir = workdir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"
        self.config_path = workdir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 20.0) -> PrometheusServer:
        """Start, and wait until /-/ready answers. A lost race for the port tries another."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config(), encoding="utf-8")
        keep_port = self.port != 0
        for _ in range(5):
            if not keep_port:
                self.port = free_port()
            if self._launch(timeout):
                return self
            if keep_port:
                break
        raise PrometheusError(f"prometheus did not start:\n{self.log_tail()}")

    def _config(self) -> str:
        targets = ", ".join(f"'{t}'" for t in self.targets)
        return (
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  scrape_timeout: {self.scrape_interval}\n"
            "scrape_configs:\n"
            "- job_name: servicegraph\n"
            "  static_configs:\n"
            f"  - targets: [{targets}]\n"
        )

    def _launch(self, timeout: float) -> bool:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # most likely the port was taken meanwhile
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return True
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.post(f"{self.url}/api/v1/query", data={"query": promql}, timeout=5)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def wait_for_series(self, promql: str, count: int, *, timeout: float = 20.0) -> None:
        """Until `promql` answers at least `count` series (rate() needs two scrapes)."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                seen = self.query(promql)
                if len(seen) >= count:
                    return
            time.sleep(0.2)
        raise PrometheusError(
            f"{promql} answered {len(seen)} series, not {count}, within {timeout}s\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the fake Prometheus ---------------------------------------------------------------------

MODES = (
    "ok",  # a valid answer from `serve`
    "unauthorized",  # 401
    "forbidden",  # 403
    "error",  # 500, plain text
    "unavailable",  # 503, plain text
    "query_timeout",  # 503 {"errorType": "timeout"}, as Prometheus answers a query it timed out
    "bad_query",  # 400 {"errorType": "bad_data"}
    "redirect",  # 302 elsewhere
    "malformed",  # 200 with broken JSON
    "not_success",  # 200 {"status": "error"}
    "matrix",  # 200 with a range vector
    "slow",  # a valid answer after `delay` seconds
    "oversized",  # 200 streaming `oversize` bytes, no Content-Length
    "oversized_declared",  # 200 with a Content-Length of `oversize` bytes
    "echo",  # 401 whose body repeats every request header (a careless proxy)
    "drop",  # close the connection without an answer
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]  # query string or form body


class FakePrometheus:
    """A fault-injecting stand-in for Prometheus's /api/v1/query on a free loopback port.

    `mode` says how every request is answered (see MODES); `script` holds modes for the next
    requests, one each, before `mode` applies again. `stop()` closes the port and `start()`
    opens the same port again: down, then recovery. `tls=(cert, key)` serves HTTPS.
    """

    def __init__(
        self,
        edges: Iterable[Edge] = (),
        *,
        tls: tuple[Path, Path] | None = None,
        delay: float = 2.0,
        oversize: int = 8 * 1024 * 1024,
    ) -> None:
        self.mode = "ok"
        self.script: deque[str] = deque()
        self.delay = delay
        self.oversize = oversize
        self.tls = tls
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.serve(edges)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def serve(self, edges: Iterable[Edge]) -> None:
        """What "ok" answers: the vectors Prometheus would give for these edges."""
        rate, failed, latency = [], [], []
        now = time.time()
        for edge in edges:
            labels = dict(zip(("client", "server", "connection_type"), edge.key, strict=True))
            rate.append({"metric": labels, "value": [now, repr(edge.rate)]})
            if edge.failed_ratio > 0:
                failures = edge.rate * edge.failed_ratio
                failed.append({"metric": labels, "value": [now, repr(failures)]})
            p95 = expected_p95(edge.latency)
            latency.append({"metric": labels, "value": [now, repr(p95)]})
        with self._lock:
            self._answers = {"rate": rate, "failed": failed, "latency": latency}

    def answer_for(self, promql: str) -> list[dict[str, Any]]:
        kind = (
            "latency"
            if "histogram_quantile" in promql
            else "failed"
            if "_request_failed_total" in promql
            else "rate"
        )
        with self._lock:
            return list(self._answers.get(kind, []))

    def next_mode(self) -> str:
        with self._lock:
            return self.script.popleft() if self.script else self.mode

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> FakePrometheus:
        self._stopping.clear()
        server = _FakeHTTPServer(("127.0.0.1", self.port), _FakeHandler, self)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port (clients get 'connection refused'); `start()` reopens the same one."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def __enter__(self) -> FakePrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakePrometheus
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, size caps) are the point of most tests


class _FakeHandler(BaseHTTPRequestHandler):
    server: _FakeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle(urllib.parse.urlsplit(self.path).query)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length).decode("utf-8", errors="replace"))

    def _handle(self, encoded_form: str) -> None:
        fake = self.server.fake
        path = urllib.parse.urlsplit(self.path).path
        form = dict(urllib.parse.parse_qsl(encoded_form))
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake.record(RecordedRequest(self.command, path, headers, form))
        if path == "/-/ready":
            return self._send(200, b"Prometheus is Ready.\n", "text/plain")
        if not path.endswith("/api/v1/query"):
            return self._send(404, b"404 page not found\n", "text/plain")
        mode = fake.next_mode()
        ok = {
            "status": "success",
            "data": {"resultType": "vector", "result": fake.answer_for(form.get("query", ""))},
        }
        if mode == "ok":
            return self._json(200, ok)
        if mode == "unauthorized":
            return self._send(401, b"Unauthorized\n", "text/plain")
        if mode == "forbidden":
            return self._send(403, b"Forbidden\n", "text/plain")
        if mode == "error":
            return self._send(500, b"internal server error\n", "text/plain")
        if mode == "unavailable":
            return self._send(503, b"Service Unavailable\n", "text/plain")
        if mode == "query_timeout":
            error = {"status": "error", "errorType": "timeout", "error": "query timed out"}
            return self._json(503, error)
        if mode == "bad_query":
            error = {"status": "error", "errorType": "bad_data", "error": "parse error"}
            return self._json(400, error)
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/api/v1/query")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if mode == "malformed":
            return self._send(200, b'{"status": "success", "data": {"resultType": "vec', "")
        if mode == "not_success":
            return self._json(200, {"status": "error", "errorType": "internal", "error": "boom"})
        if mode == "matrix":
            return self._json(200, {"status": "success", "data": {"resultType": "matrix"}})
        if mode == "slow":
            fake.sleep(fake.delay)
            return self._json(200, ok)
        if mode in ("oversized", "oversized_declared"):
            return self._oversized(fake.oversize, declared=mode == "oversized_declared")
        if mode == "echo":
            body = "\n".join(f"{k}: {v}" for k, v in self.headers.items()).encode()
            return self._send(401, body, "text/plain")
        if mode == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return None
        raise AssertionError(f"unknown fake Prometheus mode {mode!r}")

    def _json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        with contextlib.suppress(OSError):
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _oversized(self, size: int, *, declared: bool) -> None:
        head = b'{"status":"success","data":{"resultType":"vector","result":['
        series = b'{"metric":{"client":"a","server":"b","connection_type":""},"value":[1,"1"]},'
        with contextlib.suppress(OSError):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declared:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            self.wfile.write(head)
            chunk = series * 512
            sent = len(head)
            while sent < size and not self.server.fake._stopping.is_set():
                self.wfile.write(chunk)
                sent += len(chunk)
        self.close_connection = True


def self_signed_certificate(folder: Path) -> tuple[Path, Path] | None:
    """A certificate for 127.0.0.1 and its key, made with the openssl CLI; None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
