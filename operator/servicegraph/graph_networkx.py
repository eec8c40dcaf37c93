"""The snapshot as a networkx DiGraph, for users' own analyses and for the exports.

Pure. Every node carries its snapshot fields (declared, team, tier, role, blastRadius,
inCycle, slo, ...) and every edge its own (stale, declared, observed, confidence,
attributes, sources, traffic) plus `drift`: "undeclared", "unobserved" or None. Stale edges
are included: filter on `stale` for the live graph.

`flatten` gives the same graph with one scalar (str, int, float or bool) per attribute, for
formats that hold nothing else (GraphML, GEXF):
- graph: namespace and name of the ServiceGraph, and the summary counts (services, edges, ...);
- node: label (the service name), declared, namespace, object, team, tier, role, blastRadius,
  inCycle, and from its SLO figures availability, dependencyCeiling, weakestDependency,
  unknownDependencies (comma-joined), impactFails and impactDegrades (the counts), syncDepth
  and syncNext (follow it for the chain);
- edge: stale, declared, observed, confidence; the winning attributes communicationMode,
  criticality, protocol, timeoutMs, retry.maxRetries, retry.backoffMs,
  retry.backoffMultiplier; sources ("manual,otel"); the freshest traffic requestRate,
  errorRate, connectionType, p95LatencyMs; drift; and per source confidence.<kind>,
  lastSeen.<kind> and, where a source's own attributes or traffic differ from the edge's,
  <key>.<kind> (criticality.otel, requestRate.service-mesh, ...).
Absent and None values are left out; ratios and rates are always floats. The lists of impact
names are not carried (the counts are), and a name holding "," or " -> " makes the joined
lists ambiguous: the node-link export keeps everything as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

Scalar = str | int | float | bool


def to_networkx(doc: Mapping[str, Any]) -> nx.DiGraph[str]:
    """A new DiGraph of a snapshot document, with the document's `graph` and `summary` as
    graph attributes."""
    drift = {
        (ref["source"], ref["target"]): kind
        for kind in ("undeclared", "unobserved")
        for ref in doc["drift"][kind]
    }
    network: nx.DiGraph[str] = nx.DiGraph(graph=doc.get("graph"), summary=doc["summary"])
    for node in doc["nodes"]:
        network.add_node(node["name"], **{k: v for k, v in node.items() if k != "name"})
    for edge in doc["edges"]:
        key = (edge["source"], edge["target"])
        attributes = {k: v for k, v in edge.items() if k not in ("source", "target")}
        network.add_edge(*key, **attributes, drift=drift.get(key))
    return network


def flatten(network: nx.DiGraph[str]) -> nx.DiGraph[str]:
    """A new DiGraph of `to_networkx`'s graph with scalar attributes only (see the module)."""
    ref = network.graph.get("graph") or {}
    flat: nx.DiGraph[str] = nx.DiGraph()
    flat.graph.update(
        _scalars(
            {
                "namespace": ref.get("namespace"),
                "name": ref.get("name"),
                **network.graph.get("summary", {}),
            }
        )
    )
    flat.add_nodes_from((name, _flat_node(name, node)) for name, node in network.nodes.items())
    flat.add_edges_from(
        (source, target, _flat_edge(edge)) for source, target, edge in network.edges(data=True)
    )
    return flat


_NODE_FIELDS = ("declared", "namespace", "object", "team", "tier", "role", "blastRadius", "inCycle")


def _flat_node(name: str, node: Mapping[str, Any]) -> dict[str, Scalar]:
    flat: dict[str, Any] = {"label": name, **{key: node.get(key) for key in _NODE_FIELDS}}
    slo = node.get("slo")
    if slo is not None:
        impact = slo.get("impact", {})
        flat.update(
            availability=_ratio(slo.get("availability")),
            dependencyCeiling=_ratio(slo.get("dependencyCeiling")),
            weakestDependency=slo.get("weakestDependency"),
            unknownDependencies=_joined(slo.get("unknownDependencies"), ","),
            impactFails=impact.get("failsCount"),
            impactDegrades=impact.get("degradesCount"),
            syncDepth=slo.get("syncDepth"),
            syncNext=slo.get("syncNext"),
        )
    return _scalars(flat)


def _flat_edge(edge: Mapping[str, Any]) -> dict[str, Scalar]:
    flat: dict[str, Any] = {
        "stale": edge["stale"],
        "declared": edge["declared"],
        "observed": edge["observed"],
        "confidence": _ratio(edge["confidence"]),
        **_flat_attributes(edge["attributes"]),
        "sources": ",".join(source["kind"] for source in edge["sources"]),
        **_flat_traffic(edge.get("traffic")),
        "drift": edge.get("drift"),
    }
    for source in edge["sources"]:
        kind = source["kind"]
        flat[f"confidence.{kind}"] = _ratio(source["confidence"])
        flat[f"lastSeen.{kind}"] = source["lastSeen"]
        own = {**_flat_attributes(source.get("attributes")), **_flat_traffic(source.get("traffic"))}
        flat.update((f"{key}.{kind}", value) for key, value in own.items())
    return _scalars(flat)


def _flat_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    if attributes is None:
        return {}
    retry = attributes.get("retry") or {}
    return {
        "communicationMode": attributes.get("communicationMode"),
        "criticality": attributes.get("criticality"),
        "protocol": attributes.get("protocol"),
        "timeoutMs": attributes.get("timeoutMs"),
        "retry.maxRetries": retry.get("maxRetries"),
        "retry.backoffMs": retry.get("backoffMs"),
        "retry.backoffMultiplier": _ratio(retry.get("backoffMultiplier")),
    }


def _flat_traffic(traffic: Mapping[str, Any] | None) -> dict[str, Any]:
    if traffic is None:
        return {}
    return {
        "requestRate": _ratio(traffic.get("requestRate")),
        "errorRate": _ratio(traffic.get("errorRate")),
        "connectionType": traffic.get("connectionType"),
        "p95LatencyMs": _ratio(traffic.get("p95LatencyMs")),
    }


def _ratio(value: float | None) -> float | None:
    """Always a float, as a GEXF attribute has the type of its first value: snapshots written
    before ceilings were floats say 1 for an empty product."""
    return None if value is None else float(value)


def _joined(names: list[str] | None, separator: str) -> str | None:
    return None if names is None else separator.join(names)


def _scalars(attributes: Mapping[str, Any]) -> dict[str, Scalar]:
    return {key: value for key, value in attributes.items() if value is not None}
