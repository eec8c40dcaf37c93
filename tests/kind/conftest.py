"""A real Kubernetes cluster for the real-cluster suite, or a skip that says why there is none.

Where the cluster comes from, in this order:

1. SERVICEGRAPH_TEST_KUBECONFIG=PATH: the cluster that kubeconfig names (its current
   context). The suite creates CRDs, one namespace and a few cluster-scoped RBAC objects
   (all named servicegraph-test-*) and removes what it created, but the CRDs.
2. pytest-kind installed (`pip install -e ".[kind]"`) and a container engine answering
   `docker info`: a kind cluster, created for the session and deleted after it (kept when
   SERVICEGRAPH_KEEP_CLUSTER=1).

A cluster is never taken from $KUBECONFIG alone: the suite must not land on whatever cluster a
shell happens to point at.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.kubectl import Kubectl  # noqa: E402

KIND_VERSION = "v0.27.0"


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


@pytest.fixture(scope="session")
def cluster_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    named = os.environ.get("SERVICEGRAPH_TEST_KUBECONFIG")
    if named:
        yield Path(named)
        return
    if importlib.util.find_spec("pytest_kind") is None:
        pytest.skip(
            "no real cluster: set SERVICEGRAPH_TEST_KUBECONFIG=PATH to use one, or install "
            'pytest-kind (pip install -e ".[kind]") on a machine with a container engine'
        )
    problem = container_engine_problem()
    if problem is not None:
        pytest.skip(f"no real cluster: pytest-kind needs a container engine ({problem})")
    # pytest-kind downloads the kind release KIND_VERSION names (its own default, v0.17, starts
    # Kubernetes 1.25, older than the 1.28 our CRD rules need); this one's default node is 1.32.
    os.environ.setdefault("KIND_VERSION", KIND_VERSION)
    from pytest_kind import KindCluster  # type: ignore[import-not-found]

    kind = KindCluster("servicegraph-test")
    kind.create()
    try:
        yield Path(kind.kubeconfig_path)
    finally:
        if not os.environ.get("SERVICEGRAPH_KEEP_CLUSTER"):
            kind.delete()


@pytest.fixture(scope="session")
def kubectl(cluster_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(cluster_kubeconfig, tmp_path_factory.mktemp("kubectl-cache"), timeout=120)


@pytest.fixture(scope="session")
def test_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A namespace of the session's own, deleted at the end (with all that is in it)."""
    name = f"servicegraph-test-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
