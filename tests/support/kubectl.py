"""Run the real kubectl against a test API server, as a user would."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited with {returncode}:\n{stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


@dataclasses.dataclass(frozen=True)
class Kubectl:
    """kubectl bound to one kubeconfig and one discovery cache directory.

    kubectl caches API discovery in KUBECACHEDIR (default ~/.kube/cache, keyed by host:port);
    a directory per test keeps parallel tests and reused ports from seeing stale discovery."""

    kubeconfig: Path
    cachedir: Path
    timeout: float = 30.0

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.cachedir),
        }

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        """Run `kubectl ARGS`; return stdout, raise KubectlError with stderr on failure."""
        proc = subprocess.run(
            [KUBECTL, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=self.timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise KubectlError(args, proc.returncode, proc.stderr)
        return proc.stdout

    def apply(self, *manifests: Mapping[str, Any]) -> str:
        """`kubectl apply -f -` with the manifests as one JSON List (JSON, not protobuf)."""
        return self(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)}),
        )

    def get(self, *args: str) -> Any:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self("get", *args, "-o", "json"))


def wait_for(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns a truthy value; AssertionError and KubectlError mean
    "not yet". At the timeout, raise TimeoutError with the last result or error."""
    deadline = time.monotonic() + timeout
    while True:
        error: Exception | None = None
        result: T | None = None
        try:
            result = check()
        except (AssertionError, KubectlError) as e:
            error = e
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"still not true after {timeout}s: {error or result!r}") from error
        time.sleep(interval)
