"""Backstage's software catalog, both ways: the declared graph as `catalog-info.yaml` entities,
and ServiceDependency drafts from a catalog's `dependsOn`. Pure: documents in, documents out.

Each declared service is a Component (`spec.type: service`; `spec.owner` its team,
`spec.lifecycle: production`, since Backstage has no tier: the tier is a label), its declared
calls `spec.dependsOn` as entity references (`component:<namespace>/<name>`; a callee seen as
a database is a `resource:`). What Backstage has no field for (the ServiceDependency's own name
when it differs from the service's, the calls' criticality, mode, protocol, timeout and retries)
travels in annotations, so that export then import gives back the same graph.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import yaml

from servicegraph.api import API_VERSION, GROUP

BACKSTAGE_API_VERSION: Final = "backstage.io/v1alpha1"
TIER_LABEL: Final = f"{GROUP}/tier"
OBJECT_ANNOTATION: Final = f"{GROUP}/object"
CALLS_ANNOTATION: Final = f"{GROUP}/depends-on"
# Backstage requires an owner; a service without a team is owned by this placeholder, which
# `import` reads back as no team.
NO_OWNER: Final = "unknown"
DEFAULT_NAMESPACE: Final = "default"
# The defaults of a call, which the annotation leaves out.
_DEFAULT_CALL: Final = {"communicationMode": "sync", "criticality": "hard"}
# [kind:][namespace/]name, as Backstage writes entity references.
_ENTITY_REF = re.compile(r"^(?:(?P<kind>[^:/]+):)?(?:(?P<namespace>[^:/]+)/)?(?P<name>[^:/]+)$")


class CatalogError(ValueError):
    """A catalog entity that cannot become a ServiceDependency."""


def to_catalog(doc: Mapping[str, Any]) -> str:
    """`catalog-info.yaml`: the entities of `catalog_entities`, one YAML document each."""
    return yaml.safe_dump_all(catalog_entities(doc), sort_keys=False)


def catalog_entities(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Components of the declared services of snapshot document `doc`, with their
    declared calls."""
    nodes = {node["name"]: node for node in doc["nodes"]}
    calls: dict[str, list[Mapping[str, Any]]] = {}
    for edge in doc["edges"]:
        if edge["declared"]:
            calls.setdefault(edge["source"], []).append(edge)
    entities = []
    for node in doc["nodes"]:
        if not node["declared"]:
            continue
        namespace = node["namespace"] or DEFAULT_NAMESPACE
        metadata: dict[str, Any] = {"name": node["name"], "namespace": namespace}
        if node["tier"]:
            metadata["labels"] = {TIER_LABEL: node["tier"]}
        annotations = {}
        if node["object"] and node["object"] != node["name"]:
            annotations[OBJECT_ANNOTATION] = node["object"]
        own = calls.get(node["name"], [])
        detailed = [call for edge in own if len(call := _call(edge)) > 1]
        if detailed:
            annotations[CALLS_ANNOTATION] = json.dumps(detailed, sort_keys=True)
        if annotations:
            metadata["annotations"] = annotations
        entities.append(
            {
                "apiVersion": BACKSTAGE_API_VERSION,
                "kind": "Component",
                "metadata": metadata,
                "spec": {
                    "type": "service",
                    "lifecycle": "production",
                    "owner": f"group:{node['team']}" if node["team"] else NO_OWNER,
                    "dependsOn": [_reference(nodes, edge["target"], namespace) for edge in own],
                },
            }
        )
    return entities


def _call(edge: Mapping[str, Any]) -> dict[str, Any]:
    """The declared call as `spec.dependsOn` spells it, without its defaults."""
    manual: Mapping[str, Any] = next((s for s in edge["sources"] if s["kind"] == "manual"), {})
    attributes = manual.get("attributes") or edge["attributes"]
    return {
        "service": edge["target"],
        **{key: value for key, value in attributes.items() if _DEFAULT_CALL.get(key) != value},
    }


def _reference(nodes: Mapping[str, Mapping[str, Any]], target: str, namespace: str) -> str:
    node = nodes.get(target, {})
    kind = "resource" if node.get("role") == "database" else "component"
    return f"{kind}:{node.get('namespace') or namespace}/{target}"


def drafts_from_catalog(
    entities: Iterable[Mapping[str, Any]], namespace: str = DEFAULT_NAMESPACE
) -> list[dict[str, Any]]:
    """A ServiceDependency draft per Component of the catalog; other kinds are skipped, and a
    Component without a namespace is in `namespace`."""
    drafts = []
    for entity in entities:
        if entity.get("kind") != "Component" or not str(entity.get("apiVersion", "")).startswith(
            "backstage.io/"
        ):
            continue
        drafts.append(_draft(entity, namespace))
    return drafts


def _draft(entity: Mapping[str, Any], default_namespace: str) -> dict[str, Any]:
    metadata = entity.get("metadata") or {}
    spec = entity.get("spec") or {}
    service = str(metadata.get("name") or "")
    if not service:
        raise CatalogError("a Component has no metadata.name")
    annotations = metadata.get("annotations") or {}
    details = {call["service"]: call for call in _calls(service, annotations)}
    depends_on = []
    for ref in spec.get("dependsOn") or []:
        target = _reference_name(service, str(ref))
        attributes = {k: v for k, v in details.get(target, {}).items() if k != "service"}
        depends_on.append({"service": target, **attributes})
    draft_spec: dict[str, Any] = {}
    name = str(annotations.get(OBJECT_ANNOTATION) or service)
    if name != service:
        draft_spec["service"] = service
    team = _team(str(spec.get("owner") or NO_OWNER))
    if team:
        draft_spec["team"] = team
    tier = (metadata.get("labels") or {}).get(TIER_LABEL)
    if tier:
        draft_spec["tier"] = tier
    draft_spec["dependsOn"] = depends_on
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceDependency",
        "metadata": {"name": name, "namespace": metadata.get("namespace") or default_namespace},
        "spec": draft_spec,
    }


def _calls(service: str, annotations: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = annotations.get(CALLS_ANNOTATION)
    if text is None:
        return []
    try:
        calls = json.loads(str(text))
    except ValueError as error:
        raise CatalogError(
            f"Component {service}: {CALLS_ANNOTATION} is not JSON: {error}"
        ) from None
    if not isinstance(calls, list) or not all(
        isinstance(call, dict) and isinstance(call.get("service"), str) for call in calls
    ):
        raise CatalogError(
            f"Component {service}: {CALLS_ANNOTATION} must be a list of calls with a service"
        )
    return calls


def _reference_name(service: str, ref: str) -> str:
    match = _ENTITY_REF.match(ref.strip())
    if match is None:
        raise CatalogError(f"Component {service}: {ref!r} in dependsOn is no entity reference")
    return match["name"]


def _team(owner: str) -> str | None:
    """The team of an owner reference (`group:default/payments` is payments)."""
    match = _ENTITY_REF.match(owner.strip())
    name = match["name"] if match else owner
    return None if name == NO_OWNER else name
