"""The real operator as a separate process, as it runs in a pod: `servicegraph run`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .emulator import Api

SERVICEGRAPH = Path(sys.executable).with_name("servicegraph")
# Quick enough for tests, still a real quiet period: bursts must coalesce.
TEST_ENVIRONMENT = {
    "SERVICEGRAPH_DEBOUNCE": "0.3",
    "SERVICEGRAPH_DEBOUNCE_MAX": "3",
    "PYTHONUNBUFFERED": "1",
}
# What in the operator's log means it broke, not that it met a fault and coped: a traceback,
# and Kopf's words for a handler or daemon that raised (kopf/_core/actions/execution.py: the
# daemon is then restarted, "... failed with an exception and will try again in N seconds"),
# for a background task or an event worker that died, and for a daemon that would not stop.
BROKEN = (
    "Traceback (most recent call last)",
    "failed with an exception",
    "failed temporarily",
    "failed permanently",
    "has failed with an unrecoverable error",
    "did not exit in time",
)
# A Kopf background task that failed: "<name> has failed: <error>" (kopf/_cogs/aiokits/aiotasks.py).
BROKEN_TASK = " has failed: "


def broken_lines(log: str) -> list[str]:
    """The lines of an operator's log that say it broke (BROKEN), in order."""
    return [
        line
        for line in log.splitlines()
        if any(text in line for text in BROKEN) or BROKEN_TASK in line
    ]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (each test's servers get their own: tests run in parallel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OperatorProcess:
    """`servicegraph run --standalone` against `api`; its output goes to `log_path`.

    It serves its metrics on `metrics_port` (a free port unless `--metrics-port` is given).
    """

    def __init__(self, api: Api, log_path: Path, *args: str, **environment: str) -> None:
        self.api = api
        self.log_path = log_path
        if "--metrics-port" in args:
            self.metrics_port = int(args[args.index("--metrics-port") + 1])
        else:
            self.metrics_port = free_port()
            args = ("--metrics-port", str(self.metrics_port), *args)
        self.command = [str(SERVICEGRAPH), "run", "--standalone", *args]
        self.environment = api.env(**{**TEST_ENVIRONMENT, **environment})
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> OperatorProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, env=self.environment, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Stop it (SIGKILL to crash it); returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def broken_lines(self) -> list[str]:
        """The lines of the log that say the operator broke (BROKEN), in order."""
        return broken_lines(self.log())

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- its metrics ---------------------------------------------------------------------------

    def metric(self, metric: str, /, **labels: str) -> float:
        """The sum of the samples of `metric` whose labels include `labels`; 0 when there
        are none, or while the operator does not serve its metrics yet."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.TransportError:
            return 0.0
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == metric and labels.items() <= sample.labels.items()
        )

    def reconciliations(self, namespace: str | None = None, name: str | None = None) -> int:
        """Finished reconciliations (recompute, snapshot and status writes) of the graph, or of
        all graphs: the count of servicegraph_reconcile_seconds, observed when one is done."""
        labels = {k: v for k, v in (("namespace", namespace), ("name", name)) if v is not None}
        return int(self.metric("servicegraph_reconcile_seconds_count", **labels))

    def recomputations(self, namespace: str | None = None, name: str | None = None) -> int:
        """Recomputations of the graph, or of all graphs; counted before the writes."""
        labels = {k: v for k, v in (("namespace", namespace), ("name", name)) if v is not None}
        return int(self.metric("servicegraph_recomputations_total", **labels))

    def idle_reconciliations(
        self, namespace: str | None = None, name: str | None = None, timeout: float = 15
    ) -> int:
        """Wait until no reconciliation of the graph (or of any) is between its recompute and
        the end of its writes; return how many finished. Take it before a change, then
        `wait_for_reconciliation(past=...)`: the reconciliation that follows the change."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.reconciliations(namespace, name)
            if self.recomputations(namespace, name) <= done:
                return done
            assert time.monotonic() < deadline, "a reconciliation of the operator does not end"
            time.sleep(0.05)

    def wait_for_reconciliation(
        self, past: int, namespace: str | None = None, name: str | None = None, timeout: float = 15
    ) -> int:
        """Wait until more than `past` reconciliations of the graph (or of all) are done, writes
        included, and none is half done; return the count."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.idle_reconciliations(namespace, name, timeout)
            if done > past:
                return done
            assert self.running, "the operator is not running"
            assert time.monotonic() < deadline, f"no reconciliation after the first {past}"
            time.sleep(0.05)


# What the `start_operator` fixture gives a test: start `servicegraph run` with these flags
# and environment variables.
StartOperator = Callable[..., OperatorProcess]
