"""The real operator as a separate process, as it runs in a pod: `servicegraph run`."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .emulator import Api

SERVICEGRAPH = Path(sys.executable).with_name("servicegraph")
# Quick enough for tests, still a real quiet period: bursts must coalesce.
TEST_ENVIRONMENT = {
    "SERVICEGRAPH_DEBOUNCE": "0.3",
    "SERVICEGRAPH_DEBOUNCE_MAX": "3",
    "PYTHONUNBUFFERED": "1",
}


class OperatorProcess:
    """`servicegraph run --standalone` against `api`; its output goes to `log_path`."""

    def __init__(self, api: Api, log_path: Path, *args: str, **environment: str) -> None:
        self.api = api
        self.log_path = log_path
        self.command = [str(SERVICEGRAPH), "run", "--standalone", "--metrics-port", "0", *args]
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

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


# What the `start_operator` fixture gives a test: start `servicegraph run` with these flags
# and environment variables.
StartOperator = Callable[..., OperatorProcess]
