"""The operator's image, built by scripts/image.py and run with podman the way the chart's
Deployment runs it, against an API on the host's network.

    image = operator_image()                       # built once per machine and source tree
    container = OperatorContainer(image, api, deployment, tmp_path).start()
    container.probe("livenessProbe")               # as the kubelet asks it: 200
    container.stop()                               # SIGTERM, then SIGKILL after the grace period
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from .binaries import require_binary
from .emulator import Api
from .operator_process import broken_lines, free_port
from .scripts import load_script

IMAGE_TAG = "localhost/servicegraph-operator:test"
# Where the kubeconfig is mounted in the container.
KUBECONFIG = "/etc/servicegraph/kubeconfig"


def podman() -> list[str]:
    """podman with the options scripts/image.py uses on this host."""
    require_binary("podman", "builds and runs the operator's image")
    engine: list[str] = load_script("image").engine_command()
    return engine


def operator_image() -> str:
    """The image of the source tree, built offline (a Debian base made by debootstrap, wheels
    built here). Test workers take turns: the second finds podman's layer cache warm."""
    require_binary("debootstrap", "makes the image's base without a registry")
    podman()
    lock = Path(tempfile.gettempdir()) / "servicegraph-image-build.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        built: str = load_script("image").build(IMAGE_TAG, offline=True)
    return built


def security_options(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """The pod's and container's securityContext as podman options; fails on a setting it
    cannot carry out, so that the test cannot run the image more loosely than the chart."""
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    options = ["--user", f"{context['runAsUser']}:{context['runAsGroup']}"]
    assert context.get("runAsNonRoot") and context["runAsUser"] != 0
    if context.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    for capability in context.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", capability]
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault"  # podman's default
    return options


def volume_options(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """emptyDir volumes as tmpfs mounts of their size limit."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    options = []
    for mount in container.get("volumeMounts", []):
        empty_dir = volumes[mount["name"]]["emptyDir"]
        size = empty_dir.get("sizeLimit", "64Mi").replace("Mi", "m")
        options += ["--tmpfs", f"{mount['mountPath']}:rw,size={size},mode=1777"]
    return options


class OperatorContainer:
    """The Deployment's operator container under podman, on the host's network."""

    def __init__(
        self, image: str, api: Api, deployment: dict[str, Any], folder: Path, namespace: str
    ) -> None:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        self.spec = container
        self.grace_period = float(pod["terminationGracePeriodSeconds"])
        # Its ports are free ports of this machine (the host network is shared by the tests).
        self.ports = {p["name"]: free_port() for p in container["ports"]}
        defaults = {p["containerPort"]: self.ports[p["name"]] for p in container["ports"]}
        args = [self._moved(arg, defaults) for arg in container["args"]]
        kubeconfig = folder / "container-kubeconfig"
        shutil.copyfile(api.kubeconfig, kubeconfig)
        kubeconfig.chmod(0o644)  # the container's user reads it
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env |= {"POD_NAMESPACE": namespace, "KUBECONFIG": KUBECONFIG}
        self.name = f"servicegraph-test-{uuid.uuid4().hex[:12]}"
        self.command = [
            *podman(),
            "run",
            "--detach",
            "--name",
            self.name,
            "--network",
            "host",
            *load_script("image").LIMITS,
            "--memory",
            container["resources"]["limits"]["memory"].replace("Mi", "m"),
            *security_options(pod, container),
            *volume_options(pod, container),
            "--volume",
            f"{kubeconfig}:{KUBECONFIG}:ro",
            *(f"--env={k}={v}" for k, v in env.items()),
            image,
            *args,
        ]
        self.stopped_log = ""

    @staticmethod
    def _moved(arg: str, ports: dict[int, int]) -> str:
        for default, port in ports.items():
            arg = arg.replace(f":{default}/", f":{port}/").replace(f"={default}", f"={port}")
        return arg

    def start(self) -> OperatorContainer:
        subprocess.run(self.command, check=True, capture_output=True, timeout=60)
        return self

    def get(self, port: str, path: str) -> httpx.Response:
        """GET `path` on the container's port named `port`."""
        return httpx.get(f"http://127.0.0.1:{self.ports[port]}{path}", timeout=5)

    def probe(self, kind: str) -> int:
        """The status code of the container's `kind` probe (livenessProbe, readinessProbe),
        asked as the kubelet asks it."""
        http_get = self.spec[kind]["httpGet"]
        return self.get(http_get["port"], http_get["path"]).status_code

    def inspect(self) -> dict[str, Any]:
        proc = subprocess.run(
            [*podman(), "inspect", self.name], capture_output=True, text=True, check=True
        )
        found: dict[str, Any] = json.loads(proc.stdout)[0]
        return found

    def log(self) -> str:
        if self.stopped_log:
            return self.stopped_log
        proc = subprocess.run(
            [*podman(), "logs", self.name], capture_output=True, text=True, check=False
        )
        return proc.stdout + proc.stderr

    def broken_lines(self) -> list[str]:
        return broken_lines(self.log())

    def stop(self) -> tuple[int, float]:
        """Stop it as the kubelet does (the image's STOPSIGNAL, then SIGKILL after the pod's
        grace period); its exit code and how long it took."""
        started = time.monotonic()
        subprocess.run(
            [*podman(), "stop", "--time", str(int(self.grace_period)), self.name],
            capture_output=True,
            check=True,
            timeout=self.grace_period + 30,
        )
        took = time.monotonic() - started
        code = int(self.inspect()["State"]["ExitCode"])
        return code, took

    def remove(self) -> None:
        self.stopped_log = self.log()
        subprocess.run(
            [*podman(), "rm", "--force", "--time", "0", self.name], capture_output=True, check=False
        )
