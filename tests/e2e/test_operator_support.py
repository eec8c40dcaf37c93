"""Shared pieces of the operator's end-to-end scenarios (test_operator*.py); holds no tests.

Manifests as a user writes them, kubectl reads as a user makes them, and the few looks
behind the scenes a user cannot take: the emulator's write counters and object history.
The operator's own metrics are read through OperatorProcess: `reconciliations()` to wait for
a reconciliation instead of sleeping, `idle_reconciliations()` to take the count before a
change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servicegraph import snapshot, snapshot_configmaps
from servicegraph.api import ServiceGraphSpec
from servicegraph.graph import Observation, ServiceDeclaration
from tests.support.emulator import Api
from tests.support.operator_process import free_port as free_port  # for servers of the tests

ROOT = Path(__file__).resolve().parents[2]
GROUP = "graph.slo-engine.io"
API = f"{GROUP}/v1alpha1"
BOUTIQUE = ROOT / "manifests" / "examples" / "online-boutique"
BOUTIQUE_NAMESPACE = "online-boutique"
READY = '{.status.conditions[?(@.type=="Ready")].status}'
COUNTS = "{.status.services}/{.status.edges}"

SG_STATUS_PATCHES = (GROUP, "servicegraphs", "status", "patch")
SDEP_STATUS_PATCHES = (GROUP, "servicedependencies", "status", "patch")


# -- manifests ---------------------------------------------------------------------------------


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def sdep(name: str, *targets: str, ns: str = "shop", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceDependency",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"dependsOn": [{"service": t} for t in targets]},
    }


def graph(name: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceGraph",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def install(api: Api, *namespaces: str) -> None:
    """The CRDs from crds/ and the namespaces, as an administrator would."""
    api.kubectl("apply", "-f", str(ROOT / "crds"))
    if namespaces:
        api.kubectl.apply(*(namespace(n) for n in namespaces))


# -- reading as a user -------------------------------------------------------------------------


def jsonpath(api: Api, kind: str, name: str, path: str, ns: str = "shop") -> str:
    return api.kubectl("get", kind, name, "-n", ns, "-o", f"jsonpath={path}")


def counts(api: Api, name: str, ns: str = "shop") -> str:
    """`services/edges` of a ServiceGraph's status."""
    return jsonpath(api, "servicegraph", name, COUNTS, ns)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_]
    assert len(found) == 1, f"one {type_} condition expected in {obj.get('status')}"
    return found[0]


def events(api: Api, ns: str, *, kind: str = "ServiceGraph", name: str | None = None) -> list[Any]:
    items = api.kubectl.get("events", "-n", ns)["items"]
    return [
        e
        for e in items
        if e["involvedObject"]["kind"] == kind and name in (None, e["involvedObject"]["name"])
    ]


def reasons(api: Api, ns: str, name: str) -> list[tuple[str, str]]:
    """(type, reason) of the events about ServiceGraph `name`, oldest first."""
    found = events(api, ns, name=name)
    found.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["type"], e["reason"]) for e in found]


def snapshot_config_maps(api: Api, name: str, ns: str = "shop") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.kubectl.get(
        "configmaps", "-n", ns, "-l", snapshot_configmaps.snapshot_selector(name)
    )["items"]
    return items


def snapshot_document(api: Api, name: str, ns: str = "shop") -> snapshot.Document:
    """What a reader gets: `kubectl get cm -l <snapshot label> -o json`, then decode."""
    items = snapshot_config_maps(api, name, ns)
    by_name = {cm["metadata"]["name"]: cm for cm in items}
    assert name in by_name, f"no snapshot ConfigMap {ns}/{name} among {sorted(by_name)}"
    return snapshot_configmaps.decode(by_name[name], by_name.get)


def edges_of(doc: snapshot.Document) -> set[tuple[str, str]]:
    return {(e["source"], e["target"]) for e in doc["edges"]}


# -- behind the scenes -------------------------------------------------------------------------


def writes(api: Api, key: tuple[str, str, str, str]) -> int:
    """Write requests the API received so far, by (group, plural, subresource, verb)."""
    return api.emulator.writes[key]


def config_map_writes(api: Api) -> int:
    return sum(writes(api, ("", "configmaps", "", verb)) for verb in ("create", "update", "patch"))


def versions(api: Api, plural: str, name: str, ns: str = "shop") -> int:
    """How many states an object went through (creation included): a write fight shows here."""
    resource = next(r for r in api.emulator.resources if r.plural == plural)

    async def count() -> int:
        return len(api.emulator.objects[resource, ns, name].history)

    return api.server.call(count())


def table(output: str) -> list[list[str]]:
    """The cells of `kubectl get` output (no cell of ours holds a space)."""
    return [line.split() for line in output.strip().splitlines()]


# -- a snapshot left by an earlier run ---------------------------------------------------------


def seed_snapshot(
    api: Api,
    graph_name: str,
    declarations: Iterable[ServiceDeclaration],
    observations: Iterable[Observation],
    *,
    ns: str = "shop",
    spec: dict[str, Any] | None = None,
) -> snapshot.Document:
    """Write, as an earlier run of the operator would have, the snapshot of ServiceGraph
    `graph_name` (which must exist): its ConfigMaps, owned by the graph. Returns the document."""
    uid = jsonpath(api, "servicegraph", graph_name, "{.metadata.uid}", ns)
    assert uid
    parsed = ServiceGraphSpec.model_validate(spec or {})
    analysed = parsed.analyse(list(declarations), list(observations), now=datetime.now(UTC))
    doc = snapshot.to_document(analysed, graph_ref=(ns, graph_name))
    name = parsed.snapshot.config_map_name or f"{graph_name}-graph"
    manifests = []
    for payload in snapshot_configmaps.encode(doc, name).in_write_order:
        body = payload.manifest()
        body["metadata"]["namespace"] = ns
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": API,
                "kind": "ServiceGraph",
                "name": graph_name,
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        manifests.append(body)
    api.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}),
    )
    return doc
