"""The snapshot as a networkx DiGraph, for users' own analyses and for the exports.

Pure. Every node carries its snapshot fields (declared, team, tier, role, blastRadius,
inCycle, slo, ...) and every edge its own (stale, declared, observed, confidence,
attributes, sources, traffic) plus `drift`: "undeclared", "unobserved" or None. Stale edges
are included: filter on `stale` for the live graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx


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
