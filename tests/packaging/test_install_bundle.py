"""manifests/install/: one file a user can `kubectl apply -f`, kept in sync with the chart (it
is the chart rendered with ci/install-values.yaml, behind a Namespace)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

from tests.packaging.conftest import NAMESPACE, ROOT, helm_binary
from tests.support.emulator import EmulatorServer, write_kubeconfig
from tests.support.kubectl import Kubectl

BUNDLE = ROOT / "manifests" / "install" / "servicegraph-operator.yaml"


def tools() -> Any:
    spec = importlib.util.spec_from_file_location("tools", ROOT / "scripts" / "tools.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bundle() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(BUNDLE.read_text()) if doc]


def test_bundle_is_the_chart_rendered() -> None:
    """Fails when the chart, its CRDs or ci/install-values.yaml changed without
    `python scripts/tools.py render-install` (make crds runs it)."""
    assert BUNDLE.read_text() == tools().render_install_bundle(helm_binary()), (
        "manifests/install is out of date: run `python scripts/tools.py render-install`"
    )


def test_bundle_holds_what_the_operator_needs() -> None:
    objects = bundle()
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace" and objects[0]["metadata"]["name"] == NAMESPACE
    assert objects[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert kinds.count("CustomResourceDefinition") == 4
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"):
        assert kind in kinds
    for obj in objects:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition") and not obj[
            "kind"
        ].startswith("Cluster"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    crds = {o["metadata"]["name"]: o for o in objects if o["kind"] == "CustomResourceDefinition"}
    for path in (ROOT / "crds").glob("*.yaml"):
        generated = yaml.safe_load(path.read_text())
        assert crds[generated["metadata"]["name"]] == generated


def test_kubectl_apply_takes_it(tmp_path: Path) -> None:
    """The real kubectl applies the file as it is (against the in-memory API server)."""
    with EmulatorServer() as server:
        kubectl = Kubectl(write_kubeconfig(tmp_path / "kubeconfig", server.url), tmp_path / "cache")
        out = kubectl("apply", "-f", str(BUNDLE))
        assert f"namespace/{NAMESPACE} created" in out
        assert "servicegraphs.graph.slo-engine.io created" in out
        assert "deployment.apps/servicegraph-operator created" in out
        # With the CRDs served, the user's next step works.
        kubectl(
            "apply",
            "-f",
            str(ROOT / "manifests" / "examples" / "online-boutique" / "namespace.yaml"),
        )
        kubectl("apply", "-f", str(ROOT / "manifests" / "examples" / "online-boutique"))
        listed = kubectl.get("servicedependencies", "-n", "online-boutique")
        assert len(listed["items"]) == 12
        # Applying again changes nothing: no field is owned twice or rewritten.
        again = kubectl("apply", "-f", str(BUNDLE))
        assert "created" not in again
