"""The operator's image, built from this tree and run with podman as the chart's Deployment runs
it: its user, read-only root filesystem, dropped capabilities, no privilege escalation, /tmp as
the emptyDir, its memory limit, arguments and environment, on the host's network against the
API emulator. The container applies nothing: the test applies the CRDs and the manifests with
kubectl, as an administrator would.

Building takes about two minutes on a fresh machine (the base image is made by debootstrap),
seconds afterwards.
"""

from __future__ import annotations

import random
import signal
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from servicegraph import snapshot_configmaps
from tests.e2e.test_operator_snapshot import random_names
from tests.e2e.test_operator_support import (
    BOUTIQUE,
    BOUTIQUE_NAMESPACE,
    READY,
    ROOT,
    graph,
    install,
    jsonpath,
    sdep,
    snapshot_document,
)
from tests.packaging.conftest import NAMESPACE, one, render
from tests.support.container import OperatorContainer, operator_image
from tests.support.emulator import Api
from tests.support.kubectl import wait_for

pytestmark = pytest.mark.e2e

StartContainer = Callable[[], OperatorContainer]


@pytest.fixture(scope="module")
def image() -> str:
    return operator_image()


@pytest.fixture
def start_container(
    image: str, api: Api, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartContainer]:
    """Start the chart's operator container (default values); removed at the end, its log
    shown when the test failed, and a traceback in it fails the test."""
    started: list[OperatorContainer] = []
    deployment = one(render("default"), "Deployment")

    def start() -> OperatorContainer:
        container = OperatorContainer(image, api, deployment, tmp_path, NAMESPACE)
        started.append(container.start())
        return container

    yield start
    for container in started:
        container.remove()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for container in started:
            print(f"--- {container.name} ---\n{container.log()[-6000:]}")
    broken = [line for container in started for line in container.broken_lines()]
    assert not broken, "the containerised operator broke:\n" + "\n".join(broken[:5])


def metric_names(text: str) -> set[str]:
    return {sample.name for f in text_string_to_metric_families(text) for sample in f.samples}


def test_the_image_runs_the_operator_as_the_chart_does(
    api: Api, start_container: StartContainer
) -> None:
    install(api, BOUTIQUE_NAMESPACE)
    api.kubectl("apply", "-f", str(BOUTIQUE))
    container = start_container()

    ns = BOUTIQUE_NAMESPACE
    wait_for(lambda: jsonpath(api, "servicegraph", ns, READY, ns) == "True", timeout=90)
    assert jsonpath(api, "servicegraph", ns, "{.status.services}/{.status.edges}", ns) == "12/16"
    assert jsonpath(api, "servicegraph", ns, "{.status.snapshot.revision}", ns)
    # What the kubelet's probes and Prometheus's scrape ask for.
    assert container.probe("livenessProbe") == container.probe("readinessProbe") == 200
    metrics = container.get("metrics", "/metrics")
    assert metrics.status_code == 200
    assert "servicegraph_reconcile_seconds_count" in metric_names(metrics.text)

    # It ran as the chart asks, and the image says what it is.
    found = container.inspect()
    assert found["Config"]["User"] == "10001:10001"
    assert found["HostConfig"]["ReadonlyRootfs"] is True
    assert "CAP_NET_BIND_SERVICE" not in (found["EffectiveCaps"] or [])
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert found["Config"]["Labels"]["org.opencontainers.image.version"] == version
    assert found["Config"]["StopSignal"] == signal.SIGTERM


CM_CREATE = r"/api/v1/namespaces/shop/configmaps$"


def shards(api: Api) -> dict[str, Any]:
    items = api.kubectl.get("cm", "-n", "shop", "-l", f"{snapshot_configmaps.SNAPSHOT_LABEL}")
    return {cm["metadata"]["name"]: cm for cm in items["items"]}


def test_sigterm_in_the_middle_of_a_snapshot_write(
    api: Api, start_container: StartContainer
) -> None:
    """Stopped as the kubelet stops a pod while it writes a sharded snapshot: it exits cleanly
    within the grace period, and the snapshot left behind reads whole."""
    install(api, "shop")
    rng = random.Random(7)
    targets = [random_names(rng, 400) for _ in range(12)]
    manifests = [sdep(f"big-{i}", *targets[i]) for i in range(12)]
    api.kubectl.apply(graph("big"), *manifests)
    container = start_container()
    old = wait_for(lambda: jsonpath(api, "sg", "big", "{.status.snapshot.revision}"), timeout=90)
    old_names = set(shards(api))
    assert len(old_names) >= 4, "an index and three shards or more"

    # Each shard's create takes 1.5 s; a change starts a new revision.
    slow = api.emulator.inject("POST", CM_CREATE, None, times=None, delay=1.5)
    api.kubectl.apply(sdep("big-11", *targets[11][:-1]))
    wait_for(lambda: slow.hits >= 2, timeout=30)  # the second shard of the new one is on its way
    code, took = container.stop()
    slow.times = 0

    assert code == 0, f"exit code {code}: not a clean stop"
    assert took < container.grace_period, f"{took:.1f}s: killed at the end of the grace period"
    doc = snapshot_document(api, "big-graph")
    revision = snapshot_configmaps.revision_of(snapshot_configmaps.canonical_json(doc))
    index = api.kubectl.get("cm", "big-graph", "-n", "shop")
    assert index["data"][snapshot_configmaps.REVISION_KEY] == revision
    assert revision == old, "the index still names the revision it named before the stop"
    assert len(doc["edges"]) == 4800, "the graph before the change"
    assert set(shards(api)) > old_names, "the stop fell in the middle of the new revision's write"
    print(f"stopped in {took:.1f}s, exit {code}; snapshot {revision} whole ({len(old_names)} maps)")
