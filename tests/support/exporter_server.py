"""A Prometheus collector that serves itself on a free loopback port, for the exporters that
stand in for OpenTelemetry's collector and the meshes' proxies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Self

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric


class ExporterServer:
    """Own CollectorRegistry, own port; `collect` is what a scrape sees."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError

    @property
    def target(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = self._server.server_port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
