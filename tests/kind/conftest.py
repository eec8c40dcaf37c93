"""A real Kubernetes cluster for the real-cluster suite, or a skip that says why there is none.

Where the cluster comes from, in this order:

1. SERVICEGRAPH_TEST_KUBECONFIG=PATH: the cluster that kubeconfig names (its current
   context). The suite creates CRDs, one namespace and a few cluster-scoped RBAC objects
   (all named servicegraph-test-*) and removes what it created, but the CRDs.
2. pytest-kind installed (`pip install -e ".[kind]"`) and a container engine answering
   `docker info`: a kind cluster of kind KIND_VERSION (or $KIND_VERSION) on node image
   KIND_NODE_IMAGE (or $SERVICEGRAPH_KIND_NODE_IMAGE), created for the session and deleted
   after it (kept when SERVICEGRAPH_KEEP_CLUSTER=1). With CI=true and pytest-kind installed,
   a container engine that does not answer fails the suite instead of skipping it.

A cluster is never taken from $KUBECONFIG alone: the suite must not land on whatever cluster a
shell happens to point at.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.binaries import in_ci  # noqa: E402
from tests.support.kubectl import Kubectl  # noqa: E402

# The kind release and the node image it was released with (pkg/apis/config/defaults/image.go
# at its tag); .github/workflows/ci.yml passes the same, a test keeps them equal.
KIND_VERSION = "v0.32.0"
KIND_NODE_IMAGE = (
    "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
)


def container_engine_problem() -> str | None:
    """None when `docker info` answers, else what is wrong."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command"
    try:
        proc = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else proc.returncode}"
    return None


@dataclasses.dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    # pytest_kind.KindCluster when the suite made the cluster, None for a named one.
    kind: Any | None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    named = os.environ.get("SERVICEGRAPH_TEST_KUBECONFIG")
    if named:
        yield Cluster(Path(named), kind=None)
        return
    if importlib.util.find_spec("pytest_kind") is None:
        pytest.skip(
            "no real cluster: set SERVICEGRAPH_TEST_KUBECONFIG=PATH to use one, or install "
            'pytest-kind (pip install -e ".[kind]") on a machine with a container engine'
        )
    problem = container_engine_problem()
    if problem is not None:
        reason = f"no real cluster: pytest-kind needs a container engine ({problem})"
        if in_ci():
            pytest.fail(f"{reason} [CI=true with pytest-kind installed: the suite must run]")
        pytest.skip(reason)
    import pytest_kind.cluster  # type: ignore[import-not-found]

    # pytest-kind reads $KIND_VERSION when pytest loads it as a plugin, before any fixture runs,
    # and downloads the release its module names (its own default, v0.17, starts Kubernetes
    # 1.25, older than the 1.28 our CRD rules need).
    pytest_kind.cluster.KIND_VERSION = os.environ.get("KIND_VERSION", KIND_VERSION)
    kind = pytest_kind.cluster.KindCluster(
        "servicegraph-test",
        image=os.environ.get("SERVICEGRAPH_KIND_NODE_IMAGE", KIND_NODE_IMAGE),
    )
    kind.create()
    try:
        yield Cluster(Path(kind.kubeconfig_path), kind)
    finally:
        if not os.environ.get("SERVICEGRAPH_KEEP_CLUSTER"):
            kind.delete()


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(cluster.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"), timeout=120)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))


@pytest.fixture(scope="session")
def test_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A namespace of the session's own, deleted at the end (with all that is in it)."""
    name = f"servicegraph-test-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
