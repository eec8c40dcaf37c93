"""The operator never makes Argo CD see a difference: on the objects Argo CD applies it writes
only their status and, on ServiceGraphs, Kopf's finalizer (neither is compared), and its
snapshot ConfigMaps carry no tracking label or annotation, so Argo CD shows them as children of
their ServiceGraph and never prunes them. Checked on the requests the real operator sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.test_operator_support import READY, graph, install, jsonpath, sdep
from tests.packaging.audit import ApiRequest, audited_api
from tests.support.kubectl import wait_for
from tests.support.operator_process import OperatorProcess

G = "graph.slo-engine.io"
# What Argo CD puts on what it applies: the tracking label (label tracking, the default before
# Argo CD 3) or the tracking annotation (annotation tracking).
TRACKING_LABEL = "app.kubernetes.io/instance"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"


def tracked(obj: dict[str, Any]) -> dict[str, Any]:
    kind, meta = obj["kind"], obj["metadata"]
    meta.setdefault("labels", {})[TRACKING_LABEL] = "boutique"
    meta["annotations"] = {
        TRACKING_ANNOTATION: f"boutique:{G}/{kind}:{meta['namespace']}/{meta['name']}",
        "argocd.argoproj.io/sync-wave": "1",
    }
    return obj


def finalizer_only(request: ApiRequest) -> bool:
    """A JSON patch (Kopf's) or merge patch that changes metadata.finalizers and nothing else."""
    body = request.body
    if isinstance(body, list):  # JSON patch: `test` ops guard it, the others change finalizers
        return all(
            op["op"] == "test" or op["path"].startswith("/metadata/finalizers") for op in body
        )
    return isinstance(body, dict) and body == {
        "metadata": {"finalizers": body["metadata"]["finalizers"]}
    }


def holds(live: Any, desired: Any) -> bool:
    """Whether `live` has everything `desired` says (and maybe defaults besides)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and holds(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(holds(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def test_argo_cd_sees_no_difference(tmp_path: Path) -> None:
    applied = [
        tracked(graph("shop", staleAfter="24h", acknowledgedCycles=[["a", "b"]])),
        tracked(sdep("a", "b", team="x")),
        tracked(sdep("b", "a")),
        tracked(sdep("c", "a", "ghost")),
    ]
    with audited_api(tmp_path) as (api, log):
        install(api, "shop")
        api.kubectl.apply(*applied)
        process = OperatorProcess(api, tmp_path / "operator.log").start()
        try:
            wait_for(lambda: jsonpath(api, "sg", "shop", READY) == "True", timeout=30)
            wait_for(lambda: jsonpath(api, "sdep", "c", "{.status.unresolvedTargets}"), timeout=30)
            live = {
                (o["kind"], o["metadata"]["name"]): o
                for kind in ("servicegraphs", "servicedependencies")
                for o in api.kubectl.get(kind, "-n", "shop")["items"]
            }
            config_maps = api.kubectl.get("configmaps", "-n", "shop")["items"]
        finally:
            process.stop()
        requests = log.by_operator()

    # 1. What Argo CD compares is as Git has it.
    for obj in applied:
        now = live[obj["kind"], obj["metadata"]["name"]]
        # The API server fills in schema defaults; Argo CD's three-way diff ignores fields
        # that neither Git nor the last applied configuration has. Nobody else wrote the spec.
        assert holds(now["spec"], obj["spec"]), (now["spec"], obj["spec"])
        assert now["metadata"]["generation"] == 1
        assert now["metadata"]["labels"] == obj["metadata"]["labels"]
        annotations = dict(now["metadata"].get("annotations") or {})
        annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
        assert annotations == obj["metadata"]["annotations"]
        assert "status" in now
    assert live["ServiceGraph", "shop"]["metadata"]["finalizers"] == [f"{G}/finalizer"]

    # 2. Every write to those objects was to status, or Kopf's finalizer.
    writes = [
        r for r in requests if r.group == G and r.verb in ("create", "update", "patch", "delete")
    ]
    assert any(r.subresource == "status" for r in writes)
    for request in writes:
        if request.subresource == "status":
            assert request.verb == "patch" and set(request.body) == {"status"}, str(request)
        else:
            assert (request.resource, request.verb) == ("servicegraphs", "patch"), str(request)
            assert finalizer_only(request), f"{request}: {json.dumps(request.body)}"

    # 3. The snapshot: a child of its graph, not a tracked resource of the Application.
    (snapshot,) = [cm for cm in config_maps if cm["metadata"]["name"] == "shop-graph"]
    meta = snapshot["metadata"]
    assert TRACKING_LABEL not in (meta.get("labels") or {})
    assert not [a for a in meta.get("annotations") or {} if a.startswith("argocd.argoproj.io/")]
    (owner,) = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("ServiceGraph", "shop", True)
    assert owner["uid"] == live["ServiceGraph", "shop"]["metadata"]["uid"]
