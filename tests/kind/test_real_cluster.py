"""The end-to-end scenarios on a real Kubernetes API server (see conftest.py for where the
cluster comes from; skipped with the reason when there is none).

What only a real API server shows: admission by the CRDs' schemas and CEL rules, pruning of
status fields the schema does not know, garbage collection of the snapshot through its
ownerReference, and the chart's namespaced RBAC being enough: the operator runs as the chart's
ServiceAccount, with a token, not as the cluster admin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.conftest import CHART, helm
from tests.support.kubectl import Kubectl, KubectlError, wait_for

ROOT = Path(__file__).resolve().parents[2]
BOUTIQUE = ROOT / "manifests" / "examples" / "online-boutique"
VENV_BIN = Path(sys.executable).parent
API = "graph.slo-engine.io/v1alpha1"
READY = '{.status.conditions[?(@.type=="Ready")].status}'


@pytest.fixture(scope="session")
def operator(
    kubectl: Kubectl, crds: None, test_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """`servicegraph run` as the chart's ServiceAccount, in namespaced mode."""
    folder = tmp_path_factory.mktemp("operator")
    release = test_namespace  # servicegraph-test-XXXX: unique cluster-scoped names
    rbac = helm(
        "template", release, str(CHART), "--namespace", test_namespace,
        "--set", f"watchNamespaces={{{test_namespace}}}",
        "--set", "rbac.aggregateToDefaultRoles=false",
        "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml",
    )  # fmt: skip
    (folder / "rbac.yaml").write_text(rbac)
    kubectl("apply", "-f", str(folder / "rbac.yaml"))
    token = kubectl("create", "token", release, "-n", test_namespace, "--duration=2h").strip()
    view = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    view["users"] = [{"name": release, "user": {"token": token}}]
    view["contexts"][0]["context"]["user"] = release
    view["contexts"][0]["context"]["namespace"] = test_namespace
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(json.dumps(view))
    log = (folder / "operator.log").open("ab")
    process = subprocess.Popen(
        [
            str(VENV_BIN / "servicegraph"), "run", "--standalone", "--namespace", test_namespace,
            "--metrics-port", "0",
        ],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield process
    finally:
        # While the operator runs: it removes the ServiceGraphs' finalizers, else the
        # namespace would stay Terminating.
        kubectl("delete", "servicegraphs", "--all", "-n", test_namespace, "--timeout=60s")
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        print((folder / "operator.log").read_text(errors="replace")[-4000:])
        kubectl("delete", "-f", str(folder / "rbac.yaml"), "--ignore-not-found", "--wait=false")


def in_namespace(namespace: str) -> list[dict[str, Any]]:
    """The Online Boutique example, moved into `namespace`."""
    objects = []
    for path in sorted(BOUTIQUE.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj["kind"] != "Namespace":
                obj["metadata"]["namespace"] = namespace
                objects.append(obj)
    return objects


def jsonpath(kubectl: Kubectl, kind: str, name: str, namespace: str, path: str) -> str:
    return kubectl("get", kind, name, "-n", namespace, "-o", f"jsonpath={path}")


@pytest.fixture(scope="module")
def boutique(kubectl: Kubectl, operator: Any, test_namespace: str) -> str:
    kubectl.apply(*in_namespace(test_namespace))
    wait_for(
        lambda: jsonpath(kubectl, "sg", "online-boutique", test_namespace, READY) == "True",
        timeout=120,
        interval=1,
    )
    return test_namespace


# The oldest Kubernetes the suite accepts (CEL rules with fieldPath and reason need 1.28).
MIN_KUBERNETES_MINOR = 30


def test_the_cluster_is_recent_enough(kubectl: Kubectl) -> None:
    server = json.loads(kubectl("version", "-o", "json"))["serverVersion"]
    assert int(server["major"]) == 1
    assert int(server["minor"].rstrip("+")) >= MIN_KUBERNETES_MINOR, server["gitVersion"]


def test_admission_refuses_what_check_refuses(
    kubectl: Kubectl, crds: None, test_namespace: str, tmp_path: Path
) -> None:
    bad = [
        {"service": "a", "dependsOn": [{"service": "a"}]},  # depends on itself
        {"service": "a", "dependsOn": [{"service": "b"}, {"service": "b"}]},  # twice
        {"service": "a", "dependsOn": [{"service": "b", "communicationMode": "sometimes"}]},
        {"service": "a", "dependsOn": [{"service": "b", "timeoutMs": -1}]},
    ]
    for i, spec in enumerate(bad):
        obj = {
            "apiVersion": API,
            "kind": "ServiceDependency",
            "metadata": {"name": f"bad-{i}", "namespace": test_namespace},
            "spec": spec,
        }
        with pytest.raises(KubectlError) as refused:
            kubectl.apply(obj)
        assert "spec.dependsOn" in str(refused.value), refused.value
        path = tmp_path / f"bad-{i}.yaml"
        path.write_text(yaml.safe_dump(obj))
        offline = subprocess.run(
            [str(VENV_BIN / "servicegraph"), "check", str(path)], capture_output=True, text=True
        )
        assert offline.returncode == 2, offline.stderr


def test_online_boutique_converges(kubectl: Kubectl, boutique: str) -> None:
    status = kubectl.get("servicegraph", "online-boutique", "-n", boutique)["status"]
    assert (status["services"], status["edges"], status["cycles"]) == (12, 16, 0)
    # Nothing the operator writes is pruned by the real API server's schema.
    assert status["observedGeneration"] == 1
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "Acyclic"}
    assert status["snapshot"]["configMap"] == "online-boutique-graph"
    assert set(status["driftSamples"]) == {"undeclared", "unobserved"}
    checkout = kubectl.get("sdep", "checkoutservice", "-n", boutique)["status"]
    assert "paymentservice" in checkout["resolvedTargets"]
    assert checkout["conditions"][0]["type"] == "Accepted"


def test_snapshot_is_a_child_without_tracking_label(kubectl: Kubectl, boutique: str) -> None:
    cm = kubectl.get("configmap", "online-boutique-graph", "-n", boutique)
    assert "app.kubernetes.io/instance" not in (cm["metadata"].get("labels") or {})
    (owner,) = cm["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("ServiceGraph", "online-boutique")


def test_kubectl_plugin_reads_the_live_snapshot(kubectl: Kubectl, boutique: str) -> None:
    proc = subprocess.run(
        [
            "kubectl", "servicegraph", "query", "frontend", "--graph",
            f"{boutique}/online-boutique", "--depth", "2", "-o", "json",
        ],
        env={**kubectl.env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "checkoutservice" in json.loads(proc.stdout)["nodes"]


def test_deleting_a_graph_collects_its_snapshot(kubectl: Kubectl, boutique: str) -> None:
    doomed = {
        "apiVersion": API,
        "kind": "ServiceGraph",
        "metadata": {"name": "doomed", "namespace": boutique},
        "spec": {},
    }
    kubectl.apply(doomed)
    wait_for(lambda: kubectl.get("configmap", "doomed-graph", "-n", boutique), timeout=60)
    kubectl("delete", "servicegraph", "doomed", "-n", boutique, "--timeout=60s")
    deadline = time.monotonic() + 60
    while kubectl("get", "configmap", "-n", boutique, "--field-selector",
                  "metadata.name=doomed-graph", "-o", "name").strip():  # fmt: skip
        assert time.monotonic() < deadline, "the garbage collector left the snapshot"
        time.sleep(1)
