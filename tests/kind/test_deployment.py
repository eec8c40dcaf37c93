"""The operator as it ships: its image, installed by the Helm chart as a Deployment, on a real
cluster (see conftest.py for where the cluster comes from; skipped with the reason when there
is none).

What the host-run operator of test_real_cluster.py cannot show: the image starts under the
chart's Pod Security "restricted" settings, the kubelet's readiness and liveness probes pass,
and the operator in the pod, with the chart's RBAC, reconciles Online Boutique.

The image is built with docker from this tree and loaded into the kind cluster with
`kind load docker-image`. On a cluster named by SERVICEGRAPH_TEST_KUBECONFIG, nothing can be
loaded: SERVICEGRAPH_TEST_IMAGE=REPOSITORY:TAG names an image that cluster can pull, else the
module skips.

The release has a namespace of its own: two operators watching one namespace would fight over
its graphs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml

from tests.kind.conftest import Cluster
from tests.kind.test_real_cluster import READY, in_namespace, jsonpath
from tests.packaging.conftest import CHART, helm
from tests.support.kubectl import Kubectl, KubectlError, wait_for
from tests.support.scripts import load_script

BUILT_IMAGE = "localhost/servicegraph-operator:kind-test"


@dataclasses.dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    pull_policy: str


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    deployment: dict[str, Any]


def split_image(name: str) -> Image:
    repository, _, tag = name.rpartition(":")
    assert repository and "/" not in tag, f"not REPOSITORY:TAG: {name}"
    return Image(repository, tag, "IfNotPresent")


@pytest.fixture(scope="module")
def operator_image(cluster: Cluster) -> Image:
    named = os.environ.get("SERVICEGRAPH_TEST_IMAGE")
    if named:
        return split_image(named)
    if cluster.kind is None:
        pytest.skip(
            "the image cannot be loaded into the cluster of SERVICEGRAPH_TEST_KUBECONFIG (not "
            "a kind cluster of this suite): set SERVICEGRAPH_TEST_IMAGE=REPOSITORY:TAG to an "
            "image it can pull"
        )
    built: str = load_script("image").build(BUILT_IMAGE, offline=False, engine_name="docker")
    cluster.kind.load_docker_image(built)
    # Never pulled: the node has it, and no registry does.
    return dataclasses.replace(split_image(built), pull_policy="Never")


@pytest.fixture(scope="module")
def release(
    kubectl: Kubectl, cluster: Cluster, crds: None, operator_image: Image
) -> Iterator[Release]:
    """The chart installed into a namespace of its own that enforces Pod Security
    "restricted", watching that namespace."""
    name = f"servicegraph-test-deploy-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    kube = ("--kubeconfig", str(cluster.kubeconfig), "--namespace", name)
    try:
        helm(
            "install", name, str(CHART), *kube, "--skip-crds",
            "--set", f"image.repository={operator_image.repository}",
            "--set", f"image.tag={operator_image.tag}",
            "--set", f"image.pullPolicy={operator_image.pull_policy}",
            "--set", f"watchNamespaces={{{name}}}",
            "--set", "rbac.aggregateToDefaultRoles=false",
        )  # fmt: skip
        manifest = helm("get", "manifest", name, *kube)
        (deployment,) = (
            doc for doc in yaml.safe_load_all(manifest) if doc and doc["kind"] == "Deployment"
        )
        yield Release(name, name, deployment)
    finally:
        try:
            # While the operator runs: it removes the ServiceGraphs' finalizers, else the
            # namespace would stay Terminating.
            kubectl("delete", "servicegraphs", "--all", "-n", name, "--timeout=60s")
        finally:
            print(operator_log(kubectl, name))
            helm("uninstall", name, *kube, "--ignore-not-found")
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def instance_selector(release: str) -> str:
    return f"app.kubernetes.io/instance={release}"


def operator_log(kubectl: Kubectl, release: str) -> str:
    try:
        return kubectl("logs", "-n", release, "-l", instance_selector(release), "--tail=200")
    except KubectlError as error:
        return str(error)


@pytest.fixture(scope="module")
def available(kubectl: Kubectl, release: Release) -> Release:
    name = release.deployment["metadata"]["name"]
    # Within kubectl's own 120 s: the image is on the node already.
    kubectl("rollout", "status", f"deployment/{name}", "-n", release.namespace, "--timeout=100s")
    return release


def operator_pod(kubectl: Kubectl, release: Release) -> dict[str, Any]:
    pods = kubectl.get("pods", "-n", release.namespace, "-l", instance_selector(release.name))
    (pod,) = pods["items"]
    found: dict[str, Any] = pod
    return found


def test_deployment_becomes_available(kubectl: Kubectl, available: Release) -> None:
    name = available.deployment["metadata"]["name"]
    status = kubectl.get("deployment", name, "-n", available.namespace)["status"]
    assert status.get("availableReplicas") == 1, status
    # Admitted under the namespace's "restricted" enforcement, and running the image built here.
    pod = operator_pod(kubectl, available)
    (wanted,) = available.deployment["spec"]["template"]["spec"]["containers"]
    (status,) = pod["status"]["containerStatuses"]
    assert status["image"].endswith(wanted["image"].split("/", 1)[-1]), status["image"]
    assert status["imageID"], status


def test_online_boutique_converges_under_the_deployment(
    kubectl: Kubectl, available: Release
) -> None:
    namespace = available.namespace
    kubectl.apply(*in_namespace(namespace))
    wait_for(
        lambda: jsonpath(kubectl, "sg", "online-boutique", namespace, READY) == "True",
        timeout=120,
        interval=1,
    )
    status = kubectl.get("servicegraph", "online-boutique", "-n", namespace)["status"]
    assert (status["services"], status["edges"], status["cycles"]) == (12, 16, 0)
    assert status["snapshot"]["configMap"] == "online-boutique-graph"
    assert kubectl.get("configmap", "online-boutique-graph", "-n", namespace)


def test_probes_pass(kubectl: Kubectl, available: Release) -> None:
    pod = operator_pod(kubectl, available)
    (container,) = pod["spec"]["containers"]
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    # Long enough for failed liveness probes to have restarted the container.
    liveness_window = (
        liveness.get("initialDelaySeconds", 0)
        + liveness["periodSeconds"] * liveness["failureThreshold"]
        + liveness["timeoutSeconds"]
    )
    (status,) = pod["status"]["containerStatuses"]
    started = datetime.fromisoformat(status["state"]["running"]["startedAt"])
    running_for = time.time() - started.timestamp()
    time.sleep(max(0.0, liveness_window - running_for))

    pod = operator_pod(kubectl, available)
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True", pod["status"]["conditions"]
    (status,) = pod["status"]["containerStatuses"]
    assert status["ready"] is True
    assert status["restartCount"] == 0, status
    # Readiness may fail before the endpoint listens; liveness, after its initial delay, never.
    events = kubectl.get(
        "events", "-n", available.namespace,
        "--field-selector", f"involvedObject.name={pod['metadata']['name']},reason=Unhealthy",
    )  # fmt: skip
    failed = [e["message"] for e in events["items"] if e["message"].startswith("Liveness")]
    assert not failed, failed
    # The endpoints the probes ask, through the API server's proxy to the pod: kubectl fails on
    # anything but a 2xx, and Kopf answers with the probes' results as JSON.
    for probe in (liveness, readiness):
        port = next(
            p["containerPort"] for p in container["ports"] if p["name"] == probe["httpGet"]["port"]
        )
        path = f"/api/v1/namespaces/{available.namespace}/pods/{pod['metadata']['name']}:{port}"
        assert isinstance(
            json.loads(kubectl("get", "--raw", f"{path}/proxy{probe['httpGet']['path']}")), dict
        )
